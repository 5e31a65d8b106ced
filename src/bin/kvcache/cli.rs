//! The `kvcache` commands: generate text with the KV cache on or off and print
//! per-token timings, print raw logits, tokenize, score, cache costs.
//!
//! Standard output is written through `?`: a reader that goes away (`| head`)
//! ends the command quietly with status 141, the status a shell reports for a
//! tool that SIGPIPE stopped; any other write error is one `kvcache:` line and
//! status 1.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde::Serialize;
use web_time::Instant;

use kvcache_wasm::bench::{self, Interleaved};
use kvcache_wasm::{load, options};
use kvcache_wasm::{
    BackendKind, Error, Generation, Generator, KvDtype, ModelOptions, PrefillOptions, Result,
    StopReason,
};

#[derive(Parser)]
#[command(
    name = "kvcache",
    version,
    about = "A decoder LLM with a visible KV cache"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming it (or one JSON object with --json).
    Generate(GenerateArgs),
    /// Print the logits of the last position for a list of token ids.
    Logits(LogitsArgs),
    /// Print the token ids a prompt starts with (BOS included where the model adds it).
    Tokenize(TokenizeArgs),
    /// Teacher-forced scoring of a text through the cache settings given, as JSON:
    /// the ids, each predicted token's negative log-likelihood (nats) and the perplexity.
    Score(ScoreArgs),
    /// Time the cache strategy alone (cache update + attention, no weights) per token, as JSON.
    CacheCost(CacheCostArgs),
    /// Greedy decoding with several cache strategies taking turns token by token,
    /// every whole step timed, as JSON (the strategies compared on the real model).
    Interleave(InterleaveArgs),
}

#[derive(Args)]
struct ModelArgs {
    /// An HF folder (config.json, model.safetensors, tokenizer.json), a .gguf file, or `gpt2-124m-random`.
    #[arg(long)]
    model: String,
    /// Longest sequence (and what `prealloc` allocates); default min(model context, 1024).
    #[arg(long)]
    max_seq_len: Option<usize>,
    /// burn backend: flex or ndarray.
    #[arg(long, default_value = BackendKind::default().name())]
    backend: String,
    /// Seed of the random weights of `gpt2-124m-random` (default 0); only with that model.
    #[arg(long)]
    weights_seed: Option<u64>,
}

/// The KV cache flags; checked by [`ModelOptions`], exactly as JS's options are.
/// Without a cache only a window has an effect (it masks the recomputation),
/// so `--no-cache` refuses the other strategies and `--kv-dtype` ([`CacheArgs::check`]).
#[derive(Args)]
struct CacheArgs {
    /// Recompute the whole sequence for every token (the baseline); with
    /// `--cache window`, each token attends only to the window (and sinks).
    #[arg(long, conflicts_with = "kv_dtype")]
    no_cache: bool,
    #[command(flatten)]
    strategy: StrategyArgs,
}

/// The strategy flags alone, for `cache-cost`, which times a cache and so has no `--no-cache`.
#[derive(Args)]
struct StrategyArgs {
    /// How the KV cache stores keys and values: concat (the default), prealloc or window.
    #[arg(long)]
    cache: Option<String>,
    #[command(flatten)]
    rows: RowArgs,
}

/// The window strategy's size and sinks, and the precision of every cached row.
#[derive(Args)]
struct RowArgs {
    /// Sliding-window size of the window strategy, between 1 and maxSeqLen.
    #[arg(long)]
    window: Option<usize>,
    /// Attention sinks of the window strategy: the first S tokens stay visible besides the window; fewer than it.
    #[arg(long)]
    sinks: Option<usize>,
    /// How the cache stores each key and value row: f32, f16, or int8 (blocks of 32 with an f16 scale).
    #[arg(long, default_value = "f32")]
    kv_dtype: String,
}

impl ModelArgs {
    /// The flags as the JS options object that says the same.
    fn options(
        &self,
        cache: Option<&str>,
        (window, sinks): (Option<usize>, Option<usize>),
        kv_dtype: &str,
        use_cache: bool,
    ) -> ModelOptions {
        ModelOptions {
            cache: cache.map(str::to_string),
            window,
            sinks,
            kv_dtype: Some(kv_dtype.to_string()),
            max_seq_len: self.max_seq_len,
            seed: self.weights_seed,
            backend: Some(self.backend.clone()),
            use_cache: Some(use_cache),
        }
    }

    fn with_cache(&self, cache: &CacheArgs) -> ModelOptions {
        self.with_strategy(&cache.strategy, !cache.no_cache)
    }

    fn with_strategy(&self, strategy: &StrategyArgs, use_cache: bool) -> ModelOptions {
        let rows = &strategy.rows;
        let window = (rows.window, rows.sinks);
        self.options(strategy.cache.as_deref(), window, &rows.kv_dtype, use_cache)
    }

    /// Refuses `--weights-seed` with a model that brings its own weights.
    fn check(&self) -> std::result::Result<(), clap::Error> {
        if self.weights_seed.is_some() && self.model != load::RANDOM_GPT2 {
            return Err(usage_error(format!(
                "the argument '--weights-seed' only applies with '--model {}': \
                 `{}` brings its own weights",
                load::RANDOM_GPT2,
                self.model
            )));
        }
        Ok(())
    }
}

impl CacheArgs {
    /// Refuses a strategy that `--no-cache` would ignore: only a window changes
    /// what the recomputation attends to. (`--kv-dtype` is refused by clap.)
    fn check(&self) -> std::result::Result<(), clap::Error> {
        match self.strategy.cache.as_deref() {
            Some(name) if self.no_cache && name != "window" => Err(usage_error(format!(
                "the argument '--no-cache' cannot be used with '--cache {name}': \
                 without a cache only '--cache window' has an effect"
            ))),
            _ => Ok(()),
        }
    }
}

/// `--temperature`, checked as the number written (not after rounding it to 32 bits), as JS's
/// `temperature` is.
fn temperature(flag: &str) -> std::result::Result<f32, String> {
    options::temperature(flag.parse::<f64>().map_err(|e| e.to_string())?)
}

/// `--top-p`, checked as `--temperature` is.
fn top_p(flag: &str) -> std::result::Result<f32, String> {
    options::top_p(flag.parse::<f64>().map_err(|e| e.to_string())?)
}

/// A bad combination of flags, reported as clap reports its own (status 2).
fn usage_error(message: String) -> clap::Error {
    Cli::command().error(ErrorKind::ArgumentConflict, message)
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    cache: CacheArgs,
    #[arg(long, allow_hyphen_values = true)]
    prompt: String,
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value = "0", value_parser = temperature, allow_negative_numbers = true)]
    temperature: f32,
    /// 0 keeps every token.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// In (0, 1]; 1 keeps every token.
    #[arg(long, default_value = "1", value_parser = top_p, allow_negative_numbers = true)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Wrap the prompt in the model's chat template (instruct models such as SmolLM2-Instruct).
    #[arg(long)]
    chat: bool,
    /// System message for `--chat`.
    #[arg(long)]
    system_prompt: Option<String>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

impl GenerateArgs {
    /// The flags as the JS options object of `generate` that says the same.
    fn options(&self) -> PrefillOptions {
        PrefillOptions {
            max_tokens: Some(self.max_tokens),
            temperature: Some(self.temperature),
            top_k: Some(self.top_k),
            top_p: Some(self.top_p),
            seed: Some(self.seed),
            stop_ids: None,
            chat: Some(self.chat),
            system_prompt: self.system_prompt.clone(),
        }
    }
}

#[derive(Args)]
struct LogitsArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    cache: CacheArgs,
    /// Comma-separated token ids, e.g. 1,2,3.
    #[arg(long, value_delimiter = ',', required = true)]
    ids: Vec<u32>,
    /// Print JSON (the only format).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TokenizeArgs {
    /// An HF folder, a .gguf file, or `gpt2-124m-random` (only its tokenizer is used).
    #[arg(long)]
    model: String,
    #[arg(long, allow_hyphen_values = true)]
    text: String,
    /// Print JSON (the only format): `{"ids": [...]}`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    cache: CacheArgs,
    #[arg(long, allow_hyphen_values = true)]
    text: String,
    /// Print JSON (the only format): `{"ids": [...], "nll": [...], "perplexity": x}`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CacheCostArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    cache: StrategyArgs,
    /// One-token steps to time, from an empty cache.
    #[arg(long, default_value_t = 1024)]
    tokens: usize,
}

#[derive(Args)]
struct InterleaveArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The strategies that take turns, e.g. concat,prealloc (`window` uses `--window` and `--sinks`).
    #[arg(long, value_delimiter = ',', required = true)]
    caches: Vec<String>,
    #[command(flatten)]
    rows: RowArgs,
    #[arg(long, allow_hyphen_values = true)]
    prompt: String,
    /// New tokens, the first from the prefill (which is not timed).
    #[arg(long, default_value_t = 64)]
    tokens: usize,
}

/// `generate --json`: the run's [`Generation`] and the generator's settings,
/// keys and values in snake_case.
#[derive(Serialize)]
struct GenerateJson<'a> {
    prompt_ids: &'a [u32],
    generated_ids: &'a [u32],
    text: &'a str,
    step_ms: &'a [f64],
    prefill_ms: f64,
    tokens_per_sec: f64,
    load_ms: f64,
    cache_len: usize,
    cache_layer_lens: &'a [usize],
    cache_bytes: usize,
    cache_bytes_formula: usize,
    use_cache: bool,
    /// `None` with the cache off, unless a window masks the recomputation.
    strategy: Option<String>,
    kv_dtype: KvDtype,
    backend: &'static str,
    stop_reason: Option<&'static str>,
}

impl<'a> GenerateJson<'a> {
    fn new(result: &'a Generation, opened: &Opened) -> Self {
        let generator = &opened.generator;
        let options = generator.options();
        GenerateJson {
            prompt_ids: &result.prompt_ids,
            generated_ids: &result.ids,
            text: &result.text,
            step_ms: &result.step_ms,
            prefill_ms: result.prefill_ms,
            tokens_per_sec: result.tokens_per_sec,
            load_ms: opened.load_ms,
            cache_len: result.cache_len,
            cache_layer_lens: &result.cache_layer_lens,
            cache_bytes: result.cache_bytes,
            cache_bytes_formula: generator.cache_bytes_formula(),
            use_cache: options.use_cache,
            strategy: (options.use_cache || options.strategy.window().is_some())
                .then(|| options.strategy.to_string()),
            kv_dtype: result.kv_dtype,
            backend: opened.backend.name(),
            stop_reason: result.stop_reason.map(stop_reason_name),
        }
    }
}

/// [`StopReason`] in snake_case, as the CLI's JSON spells values (the JS API
/// keeps its camelCase).
fn stop_reason_name(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopToken => "stop_token",
        StopReason::ContextFull => "context_full",
    }
}

/// `tokenize`: the ids the text starts a prompt with.
#[derive(Serialize)]
struct TokenizeJson {
    ids: Vec<u32>,
}

/// `logits`: the last position's logits.
#[derive(Serialize)]
struct LogitsJson {
    logits: Vec<f32>,
}

/// `cache-cost`: the milliseconds of every step of the strategy alone.
#[derive(Serialize)]
struct CacheCostJson {
    strategy: String,
    kv_dtype: KvDtype,
    backend: &'static str,
    max_seq_len: usize,
    step_ms: Vec<f64>,
}

/// `interleave`: [`Interleaved`] in snake_case, with the settings it ran under.
#[derive(Serialize)]
struct InterleaveJson {
    strategies: Vec<String>,
    kv_dtype: KvDtype,
    backend: &'static str,
    max_seq_len: usize,
    ids: Vec<u32>,
    step_ms: Vec<Vec<f64>>,
    disagreements: usize,
}

/// Why a command stopped short.
#[derive(Debug)]
enum Failure {
    /// The engine refused the input or failed.
    Engine(Error),
    /// Standard output could not be written.
    Output(io::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Engine(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

/// What a command ends with.
type Outcome = std::result::Result<(), Failure>;

/// The status after a broken pipe: 128 + SIGPIPE, as a shell reports for a
/// tool that the signal stopped (Rust ignores SIGPIPE, so the write fails instead).
const BROKEN_PIPE_STATUS: u8 = 141;

/// Writes `text` to standard output now, not when a line ends.
fn write_now(out: &mut impl Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn print_json(value: &impl Serialize) -> Outcome {
    // Structs of numbers, strings and lists: nothing serde_json can refuse.
    let text = serde_json::to_string(value).expect("plain data serializes");
    write_now(&mut io::stdout().lock(), &format!("{text}\n"))?;
    Ok(())
}

/// A generator and how it came to be.
struct Opened {
    generator: Generator,
    backend: BackendKind,
    load_ms: f64,
}

/// Checks `options` (before any file is read), then loads the model.
fn open(model: &str, options: &ModelOptions) -> Result<Opened> {
    let cache_options = options.cache_options()?;
    let backend = options.backend()?;
    let started = Instant::now();
    let loaded = load::from_path(model, options.weights_seed(), &backend.device())?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Opened {
        generator: Generator::new(loaded, cache_options)?,
        backend,
        load_ms,
    })
}

fn generate(args: &GenerateArgs) -> Outcome {
    let options = args.options().run_options()?;
    let mut opened = open(&args.model.model, &args.model.with_cache(&args.cache))?;
    let generator = &mut opened.generator;
    if args.json {
        let result = generator.generate(&args.prompt, &options, |_| {})?;
        return print_json(&GenerateJson::new(&result, &opened));
    }
    // The prompt once the prefill has taken it, then each token as it comes;
    // a write that fails stops the run there.
    let mut out = io::stdout().lock();
    let first = generator.prefill(&args.prompt, &options)?;
    write_now(&mut out, &args.prompt)?;
    let mut streamed = 0;
    let result = generator.run_to_end(first, |event| {
        write_now(&mut out, &event.text)?;
        streamed += event.text.len();
        Ok::<(), Failure>(())
    })?;
    // What only the end of the run decodes (a character whose bytes it left incomplete).
    let tail = result.text.get(streamed..).unwrap_or_default();
    write_now(&mut out, &format!("{tail}\n"))?;
    let settings = generator.options();
    let mode = if settings.use_cache {
        format!("cache {} {}", settings.strategy, settings.kv_dtype)
    } else if settings.strategy.window().is_some() {
        format!("no cache, {}", settings.strategy)
    } else {
        "no cache".into()
    };
    let mean = if result.step_ms.len() > 1 {
        result.step_ms[1..].iter().sum::<f64>() / (result.step_ms.len() - 1) as f64
    } else {
        0.0
    };
    // Nowhere to report a failure to write to stderr.
    let _ = writeln!(
        io::stderr(),
        "[{mode}] {} tokens | load {:.0} ms | prefill {:.1} ms | decode {:.1} ms/token, {:.1} tokens/s | cache {} tokens, {} bytes (formula {})",
        result.ids.len(),
        opened.load_ms,
        result.prefill_ms,
        mean,
        result.tokens_per_sec,
        result.cache_len,
        result.cache_bytes,
        generator.cache_bytes_formula()
    );
    Ok(())
}

fn tokenize(args: &TokenizeArgs) -> Outcome {
    let tokenizer = load::tokenizer_from_path(&args.model)?;
    let ids = tokenizer.encode_prompt(&args.text, true)?;
    print_json(&TokenizeJson { ids })
}

fn logits(args: &LogitsArgs) -> Outcome {
    let mut opened = open(&args.model.model, &args.model.with_cache(&args.cache))?;
    let logits = opened.generator.logits(&args.ids)?;
    print_json(&LogitsJson { logits })
}

fn score(args: &ScoreArgs) -> Outcome {
    let mut opened = open(&args.model.model, &args.model.with_cache(&args.cache))?;
    print_json(&opened.generator.score(&args.text)?)
}

fn cache_cost(args: &CacheCostArgs) -> Outcome {
    let opened = open(
        &args.model.model,
        &args.model.with_strategy(&args.cache, true),
    )?;
    let generator = &opened.generator;
    print_json(&CacheCostJson {
        step_ms: bench::cache_cost(generator, args.tokens)?,
        strategy: generator.options().strategy.to_string(),
        kv_dtype: generator.options().kv_dtype,
        backend: opened.backend.name(),
        max_seq_len: generator.max_seq_len(),
    })
}

fn interleave(args: &InterleaveArgs) -> Outcome {
    // Each strategy checked as the options `{ cache: name, window }` would be,
    // with the window given to the `window` strategy only.
    let strategies = args
        .caches
        .iter()
        .map(|name| {
            let window = if name == "window" {
                (args.rows.window, args.rows.sinks)
            } else {
                (None, None)
            };
            let options = args
                .model
                .options(Some(name), window, &args.rows.kv_dtype, true);
            Ok(options.cache_options()?.strategy)
        })
        .collect::<Result<Vec<_>>>()?;
    if !args.caches.iter().any(|name| name == "window") {
        for (flag, given) in [
            ("window", args.rows.window.is_some()),
            ("sinks", args.rows.sinks.is_some()),
        ] {
            if given {
                return Err(Error::InvalidArgument(format!(
                    "option `{flag}` only applies with cache: \"window\" (--caches does not list it)"
                ))
                .into());
            }
        }
    }
    let model = args
        .model
        .options(None, (None, None), &args.rows.kv_dtype, true);
    let opened = open(&args.model.model, &model)?;
    let generator = &opened.generator;
    let out = bench::interleaved(generator, &args.prompt, &strategies, args.tokens)?;
    let Interleaved {
        strategies,
        ids,
        step_ms,
        disagreements,
    } = out;
    print_json(&InterleaveJson {
        strategies,
        kv_dtype: generator.options().kv_dtype,
        backend: opened.backend.name(),
        max_seq_len: generator.max_seq_len(),
        ids,
        step_ms,
        disagreements,
    })
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_failure(&e),
    };
    if let Err(e) = check_flags(&cli.command) {
        return usage_failure(&e);
    }
    let outcome = match &cli.command {
        Command::Generate(args) => generate(args),
        Command::Logits(args) => logits(args),
        Command::Tokenize(args) => tokenize(args),
        Command::Score(args) => score(args),
        Command::CacheCost(args) => cache_cost(args),
        Command::Interleave(args) => interleave(args),
    };
    let message = match outcome {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            return ExitCode::from(BROKEN_PIPE_STATUS);
        }
        Err(Failure::Output(e)) => format!("could not write the output: {e}"),
        Err(Failure::Engine(e)) => e.to_string(),
    };
    let _ = writeln!(io::stderr(), "kvcache: {message}");
    ExitCode::FAILURE
}

/// The combinations of flags that clap's rules cannot express.
fn check_flags(command: &Command) -> std::result::Result<(), clap::Error> {
    let (model, cache) = match command {
        Command::Generate(args) => (&args.model, Some(&args.cache)),
        Command::Logits(args) => (&args.model, Some(&args.cache)),
        Command::Score(args) => (&args.model, Some(&args.cache)),
        Command::CacheCost(args) => (&args.model, None),
        Command::Interleave(args) => (&args.model, None),
        Command::Tokenize(_) => return Ok(()),
    };
    model.check()?;
    cache.map_or(Ok(()), CacheArgs::check)
}

/// A bad command line: one line on stderr, status 2.
fn usage_failure(e: &clap::Error) -> ExitCode {
    let _ = writeln!(
        io::stderr(),
        "kvcache: {} (see kvcache --help)",
        clap_cause(e)
    );
    ExitCode::from(2)
}

/// clap's explanation of a bad command line on one line, without its usage
/// block, tips and pointer to `--help` (`main` adds its own).
fn clap_cause(e: &clap::Error) -> String {
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // No command at all: clap's text is the whole help.
        let cli = Cli::command();
        let names: Vec<&str> = cli
            .get_subcommands()
            .map(|command| command.get_name())
            .filter(|&name| name != "help")
            .collect();
        return format!("name a command: {}", names.join(", "));
    }
    let text = e.to_string();
    let cause: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(|l| l.trim().trim_start_matches("error: "))
        .filter(|l| {
            !l.is_empty() && !l.starts_with("tip:") && !l.starts_with("For more information")
        })
        .collect();
    cause.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(args: &[&str]) -> std::result::Result<(), clap::Error> {
        let cli = Cli::try_parse_from([&["kvcache"], args].concat())?;
        check_flags(&cli.command)
    }

    #[test]
    fn stop_reasons_are_snake_case() {
        assert_eq!(stop_reason_name(StopReason::MaxTokens), "max_tokens");
        assert_eq!(stop_reason_name(StopReason::StopToken), "stop_token");
        assert_eq!(stop_reason_name(StopReason::ContextFull), "context_full");
    }

    #[test]
    fn no_cache_takes_a_window_only() {
        let base = ["generate", "--model", "m", "--prompt", "hi", "--no-cache"];
        let with = |flags: &[&str]| checked(&[&base[..], flags].concat());
        assert!(with(&[]).is_ok());
        assert!(with(&["--cache", "window", "--window", "4", "--sinks", "1"]).is_ok());
        assert!(with(&["--max-seq-len", "8"]).is_ok());
        for flags in [
            &["--cache", "concat"][..],
            &["--cache", "prealloc"],
            &["--kv-dtype", "f32"],
        ] {
            let e = with(flags).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{flags:?}");
        }
        // Without --no-cache every strategy and dtype goes on to the options' checks.
        let cached = ["logits", "--model", "m", "--ids", "1"];
        assert!(
            checked(&[&cached[..], &["--cache", "prealloc", "--kv-dtype", "int8"]].concat())
                .is_ok()
        );
    }

    #[test]
    fn weights_seed_needs_the_random_gpt2() {
        let seeded = ["--weights-seed", "1"];
        let random = ["cache-cost", "--model", load::RANDOM_GPT2];
        assert!(checked(&[&random[..], &seeded].concat()).is_ok());
        let file = ["cache-cost", "--model", "model.gguf"];
        assert!(checked(&file).is_ok());
        let e = checked(&[&file[..], &seeded].concat()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert!(clap_cause(&e).contains("`model.gguf` brings its own weights"));
    }
}
