//! The sandbox's own error type, carried by [`crate::Error::Sandbox`].

/// What can go wrong in the sandbox itself (as opposed to the code it runs, whose failures
/// are verdicts, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The sandbox cannot work on this host (not Linux, a required tool such as `prlimit` is
    /// missing, no Rust toolchain was found).
    #[error("sandbox unavailable: {reason}")]
    Unavailable {
        /// What is missing.
        reason: String,
    },

    /// An operating-system action of the sandbox failed.
    #[error("sandbox could not {action}: {source}")]
    Io {
        /// What the sandbox was doing, e.g. `spawn prlimit`.
        action: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The sandbox could not prepare or use a jail (its setup script failed, or a step was
    /// asked for out of order).
    #[error("sandbox setup failed: {detail}")]
    Setup {
        /// What went wrong, with the setup script's error output where there was one.
        detail: String,
    },

    /// Processes of a sandboxed step survived every attempt to kill them.
    #[error("{survivors} sandboxed process(es) of {owner} survived repeated SIGKILL")]
    Leak {
        /// Whose processes: `uid N` or `process group N`.
        owner: String,
        /// How many were still alive at the last look.
        survivors: usize,
    },
}

impl SandboxError {
    /// [`SandboxError::Io`] for `action`, as a closure for `map_err`.
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> crate::Error {
        let action = action.into();
        move |source| SandboxError::Io { action, source }.into()
    }
}

impl From<SandboxError> for crate::Error {
    fn from(error: SandboxError) -> Self {
        crate::Error::Sandbox(error)
    }
}
