mod sandbox;
mod scripted;
