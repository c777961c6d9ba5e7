//! The crate's one error type.

/// Everything that can go wrong in the engine core.
///
/// Errors about a single event ([`Error::MissingField`], [`Error::InvalidField`],
/// [`Error::NotAnObject`]) are permanent for that event: a runtime should park it in a
/// dead-letter output rather than retry it. Pipeline errors are configuration mistakes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is not valid TOML or does not match the pipeline schema
    /// (unknown key, wrong type, missing required key).
    #[error("pipeline file could not be read: {0}")]
    PipelineSyntax(#[from] toml::de::Error),

    /// A pipeline setting has a value the engine cannot run with.
    #[error("pipeline setting `{setting}` {reason}")]
    InvalidPipeline {
        /// Dotted path of the offending setting, e.g. `window.slide_ms`.
        setting: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// An event is not a JSON object.
    #[error(
        "event is not a JSON object (got {got}); events must be objects like {{\"ts\": 1, \"key\": \"a\"}}"
    )]
    NotAnObject {
        /// The JSON type that was found instead.
        got: &'static str,
    },

    /// An event lacks a field the pipeline needs (event time or key).
    #[error("event has no field `{field}` (it holds the {role})")]
    MissingField {
        /// The missing field name.
        field: String,
        /// What the field is used for: "event time" or "key".
        role: &'static str,
    },

    /// An event field has the wrong type, e.g. an event time that is not an integer.
    #[error("event field `{field}` {reason}")]
    InvalidField {
        /// The offending field name.
        field: String,
        /// What was expected.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this error is about one event (bad data, permanent: park the event in the
    /// dead-letter output and go on) rather than about the pipeline definition (stop and
    /// report to the user).
    pub fn is_event_error(&self) -> bool {
        matches!(
            self,
            Error::NotAnObject { .. } | Error::MissingField { .. } | Error::InvalidField { .. }
        )
    }

    /// Shorthand for [`Error::InvalidPipeline`].
    pub(crate) fn pipeline(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidPipeline {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}
