mod scripted;
mod strategies;
