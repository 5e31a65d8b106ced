//! One error type for the whole engine. Every message is meant to be read by a
//! user (CLI stderr, JS `Error.message`), so it names the file part, tensor or
//! option that is wrong and, where it can, what would be right.

/// Everything that can go wrong while loading a model or generating text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The weights file (safetensors or GGUF) is truncated, corrupt or of a kind we do not read.
    #[error("bad weights file: {0}")]
    Weights(String),
    /// `config.json` or GGUF metadata is missing a field, has a wrong value, or names an unsupported model.
    #[error("bad model config: {0}")]
    Config(String),
    /// A tensor is missing or its shape does not match the config.
    #[error("tensor `{name}`: {problem}")]
    Tensor { name: String, problem: String },
    /// The tokenizer could not be built or does not fit the model.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A caller passed an argument we cannot honour (empty prompt, bad sampling option, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The sequence would exceed what the model or the cache can hold.
    #[error("context full: {0}")]
    ContextFull(String),
    /// An allocation sized from input would take memory past the budget ([`crate::budget`]).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// Snapshot bytes that are not a snapshot, of a newer format, truncated or damaged.
    #[error("bad snapshot: {0}")]
    Snapshot(String),
    /// A download (`Generator.load`) failed: the network, the server, or a URL fetch refuses.
    #[error("download failed: {0}")]
    Download(String),
    /// Reading a file from disk failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn weights(msg: impl Into<String>) -> Self {
        Error::Weights(msg.into())
    }
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub(crate) fn tensor(name: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Tensor {
            name: name.into(),
            problem: problem.into(),
        }
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}
