//! MARS's prompts, after optillm's `mars/prompts.py` and `strategy_network.py` (their structure
//! and instructions, in mars's words). optillm's prompts speak of mathematics and ask for
//! `\boxed{}` answers; these ask for the answer in the form the problem asks for, so that a
//! request for code gets code.

use super::verdict::ExtractedStrategy;

/// The system prompt of the verification calls.
pub const VERIFIER_SYSTEM: &str = "You are a verification expert in a multi-agent \
     problem-solving system. You check other agents' solutions rigorously and report exactly in \
     the format asked.";

/// The verification prompt: the problem, the solution, and the report's format.
pub fn verification(problem: &str, solution: &str) -> String {
    format!(
        "Verify the proposed solution to the problem below.\n\n\
         Problem:\n{problem}\n\n\
         Proposed solution:\n{solution}\n\n\
         Check its logic step by step, every computation or line of code, whether it handles \
         every case the problem states, and whether its final answer is correct and in the \
         form the problem asks for.\n\n\
         Report:\n\
         - Overall assessment: CORRECT, INCORRECT or INCOMPLETE\n\
         - Specific issues found (if any)\n\
         - Confidence: a whole number from 1 to 10\n\
         - Suggestions for improvement (if needed)\n\n\
         Be thorough and critical."
    )
}

/// The improvement prompt: the problem, the current solution, the verifier's report, and what
/// running the code showed when a code verifier ran it.
pub fn improvement(problem: &str, solution: &str, report: &str, execution: Option<&str>) -> String {
    let execution = execution
        .map(|e| format!("Running the code showed:\n{e}\n\n"))
        .unwrap_or_default();
    format!(
        "Improve a solution using the feedback on it.\n\n\
         Problem:\n{problem}\n\n\
         Current solution:\n{solution}\n\n\
         Verification feedback:\n{report}\n\n\
         {execution}\
         Fix every error and gap the feedback names, keep what is right, and make the solution \
         complete. Reply with the complete improved solution, in the form the problem asks for."
    )
}

/// The aggregation prompt (RSA): one candidate to refine, or several to combine.
pub fn aggregation(problem: &str, candidates: &[(String, f64)]) -> String {
    if let [(only, _)] = candidates {
        return format!(
            "Here is a problem and a candidate solution, which may be incomplete or wrong. \
             Write a better solution: find its errors, keep its valid ideas, and if its approach \
             is wrong, try another.\n\n\
             Problem:\n{problem}\n\n\
             Candidate solution (may contain mistakes):\n{only}\n\n\
             Reply with the complete solution, in the form the problem asks for."
        );
    }
    let listed: String = candidates
        .iter()
        .enumerate()
        .map(|(i, (text, confidence))| {
            format!(
                "Solution {} (confidence {confidence:.2}):\n{text}\n\n",
                i + 1
            )
        })
        .collect();
    format!(
        "Here is a problem and several candidate solutions, some of which may be wrong. Combine \
         their useful ideas into one solution: weigh each one's strengths and weaknesses, where \
         they disagree choose the correct path, and if every approach is flawed, try another. \
         Do not over-simplify.\n\n\
         Problem:\n{problem}\n\n\
         Candidate solutions (may contain mistakes):\n{listed}\
         Reply with the complete solution, in the form the problem asks for."
    )
}

/// The system prompt of the strategy-extraction calls.
pub const EXTRACTION_SYSTEM: &str = "You are a problem-solving strategy analyst. You extract the \
     reasoning pattern of a solution, in the format asked.";

/// The strategy-extraction prompt.
pub fn extraction(problem: &str, solution: &str) -> String {
    format!(
        "Analyse this solution and extract its strategy.\n\n\
         Problem:\n{problem}\n\n\
         Solution:\n{solution}\n\n\
         Answer in exactly this format:\n\
         APPROACH: the kind of approach (e.g. direct computation, case analysis, iteration, \
         recursion, reduction to a known problem)\n\
         KEY_INSIGHTS: insight 1, insight 2, insight 3\n\
         TECHNIQUES: technique 1, technique 2\n\
         PATTERN: the solution's pattern in one sentence"
    )
}

/// The enhancement prompt: a solution rewritten with its peers' strategies (at most two).
pub fn enhancement(problem: &str, solution: &str, peers: &[&ExtractedStrategy]) -> String {
    let insights: String = peers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let first = |items: &[String]| items.iter().take(3).cloned().collect::<Vec<_>>();
            format!(
                "Peer strategy {}:\n- Approach: {}\n- Key insights: {}\n- Techniques: {}\n- \
                 Pattern: {}\n",
                i + 1,
                s.approach,
                first(&s.insights).join(", "),
                first(&s.techniques).join(", "),
                s.pattern.chars().take(200).collect::<String>()
            )
        })
        .collect();
    format!(
        "You are one of several agents solving a problem together. Improve your solution with \
         what your peers' strategies show, keeping your own approach where it is sound: which \
         of their techniques apply, which gaps they reveal, and how to check the result.\n\n\
         Problem:\n{problem}\n\n\
         Your current solution:\n{solution}\n\n\
         {insights}\n\
         Reply with the complete enhanced solution, in the form the problem asks for."
    )
}

/// The synthesis prompt: the best solutions and the verifications' tally.
pub fn synthesis(problem: &str, solutions: &[(String, f64)], tally: &str) -> String {
    let listed: String = solutions
        .iter()
        .enumerate()
        .map(|(i, (text, confidence))| {
            format!(
                "Solution {} (confidence {confidence:.2}):\n{text}\n{}\n",
                i + 1,
                "=".repeat(50)
            )
        })
        .collect();
    format!(
        "Synthesise these solution attempts into one final, best solution.\n\n\
         Problem:\n{problem}\n\n\
         Solutions:\n{listed}\n\
         Verification results: {tally}\n\n\
         Weigh the solutions, take what is right in each, resolve their disagreements (an \
         answer several solutions agree on deserves weight), and write a complete, \
         self-contained final solution in the form the problem asks for: its reader sees only \
         your reply."
    )
}
