//! `kvcache`: the engine from the command line. Generates text with the KV
//! cache on or off and prints per-token timings, or prints raw logits.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use web_time::Instant;

use kvcache_wasm::{bench, load};
use kvcache_wasm::{
    BackendKind, CacheStrategy, GenerateOptions, Generator, GeneratorOptions, Result,
    SamplingParams,
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
    /// Recompute the whole sequence for every token (the baseline).
    #[arg(long)]
    no_cache: bool,
    /// How the KV cache stores keys and values.
    #[arg(long, default_value = "concat", value_parser = ["concat", "prealloc", "window"])]
    cache: String,
    /// Sliding-window size for `--cache window`.
    #[arg(long)]
    window: Option<usize>,
    /// Longest sequence (and what `prealloc` allocates); default min(model context, 1024).
    #[arg(long)]
    max_seq_len: Option<usize>,
    /// burn backend.
    #[arg(long, default_value = BackendKind::default().name())]
    backend: String,
    /// Seed of the random weights of `gpt2-124m-random`.
    #[arg(long, default_value_t = 0)]
    weights_seed: u64,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// 0 keeps every token.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Wrap the prompt in the ChatML template (instruct models such as SmolLM2-Instruct).
    #[arg(long)]
    chat: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LogitsArgs {
    #[command(flatten)]
    model: ModelArgs,
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
    #[arg(long)]
    text: String,
    /// Print JSON (the only format): `{"ids": [...]}`.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CacheCostArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// One-token steps to time, from an empty cache.
    #[arg(long, default_value_t = 1024)]
    tokens: usize,
}

#[derive(Args)]
struct InterleaveArgs {
    /// The model and its options; `--cache` is replaced by `--caches`.
    #[command(flatten)]
    model: ModelArgs,
    /// The strategies that take turns, e.g. concat,prealloc (`window` uses `--window`).
    #[arg(long, value_delimiter = ',', required = true)]
    caches: Vec<String>,
    #[arg(long)]
    prompt: String,
    /// New tokens, the first from the prefill (which is not timed).
    #[arg(long, default_value_t = 64)]
    tokens: usize,
}

fn open(args: &ModelArgs) -> Result<(Generator, f64)> {
    let backend = BackendKind::parse(&args.backend)?;
    let strategy = CacheStrategy::parse(&args.cache, args.window)?;
    let started = Instant::now();
    let loaded = load::from_path(&args.model, args.weights_seed, &backend.device())?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let options = GeneratorOptions {
        strategy,
        max_seq_len: args.max_seq_len,
        use_cache: !args.no_cache,
    };
    Ok((Generator::new(loaded, options)?, load_ms))
}

fn generate(args: &GenerateArgs) -> Result<()> {
    let (mut generator, load_ms) = open(&args.model)?;
    let options = GenerateOptions {
        max_new_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        chat: args.chat,
        ..GenerateOptions::default()
    };
    let mut stdout = std::io::stdout();
    let stream = !args.json;
    if stream {
        print!("{}", args.prompt);
    }
    let result = generator.generate(&args.prompt, &options, |event| {
        if stream {
            print!("{}", event.text);
            let _ = stdout.flush();
        }
    })?;
    if args.json {
        let out = json!({
            "prompt_ids": result.prompt_ids,
            "generated_ids": result.ids,
            "text": result.text,
            "step_ms": result.step_ms,
            "prefill_ms": result.prefill_ms,
            "tokens_per_sec": result.tokens_per_sec,
            "load_ms": load_ms,
            "cache_len": result.cache_len,
            "cache_layer_lens": result.cache_layer_lens,
            "cache_bytes": result.cache_bytes,
            "cache_bytes_formula": generator.cache_bytes_formula(),
            "use_cache": generator.options().use_cache,
            "strategy": generator.options().strategy.to_string(),
            "backend": args.model.backend,
            "stop_reason": result.stop_reason,
        });
        println!("{out}");
    } else {
        println!();
        let mode = if generator.options().use_cache {
            format!("cache {}", generator.options().strategy)
        } else {
            "no cache".into()
        };
        let mean = if result.step_ms.len() > 1 {
            result.step_ms[1..].iter().sum::<f64>() / (result.step_ms.len() - 1) as f64
        } else {
            0.0
        };
        eprintln!(
            "[{mode}] {} tokens | load {:.0} ms | prefill {:.1} ms | decode {:.1} ms/token, {:.1} tokens/s | cache {} tokens, {} bytes (formula {})",
            result.ids.len(),
            load_ms,
            result.prefill_ms,
            mean,
            result.tokens_per_sec,
            result.cache_len,
            result.cache_bytes,
            generator.cache_bytes_formula()
        );
    }
    Ok(())
}

fn tokenize(args: &TokenizeArgs) -> Result<()> {
    let tokenizer = load::tokenizer_from_path(&args.model)?;
    let ids = tokenizer.encode_prompt(&args.text, true)?;
    println!("{}", json!({ "ids": ids }));
    Ok(())
}

fn logits(args: &LogitsArgs) -> Result<()> {
    let (mut generator, _) = open(&args.model)?;
    let logits = generator.logits(&args.ids)?;
    println!("{}", json!({ "logits": logits }));
    Ok(())
}

fn cache_cost(args: &CacheCostArgs) -> Result<()> {
    let (generator, _) = open(&args.model)?;
    let step_ms = bench::cache_cost(&generator, args.tokens)?;
    let out = json!({
        "strategy": generator.options().strategy.to_string(),
        "backend": args.model.backend,
        "max_seq_len": generator.max_seq_len(),
        "step_ms": step_ms,
    });
    println!("{out}");
    Ok(())
}

fn interleave(args: &InterleaveArgs) -> Result<()> {
    let strategies = args
        .caches
        .iter()
        .map(|name| CacheStrategy::parse(name, args.model.window))
        .collect::<Result<Vec<_>>>()?;
    let (generator, _) = open(&args.model)?;
    let out = bench::interleaved(&generator, &args.prompt, &strategies, args.tokens)?;
    let out = json!({
        "strategies": out.strategies,
        "backend": args.model.backend,
        "max_seq_len": generator.max_seq_len(),
        "ids": out.ids,
        "step_ms": out.step_ms,
        "disagreements": out.disagreements,
    });
    println!("{out}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap explains over several lines; keep the explanation, drop the usage block.
            let text = e.to_string();
            let cause: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(|l| l.trim().trim_start_matches("error: "))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            eprintln!("kvcache: {} (see kvcache --help)", cause.join(" "));
            return ExitCode::from(2);
        }
    };
    let outcome = match &cli.command {
        Command::Generate(args) => generate(args),
        Command::Logits(args) => logits(args),
        Command::Tokenize(args) => tokenize(args),
        Command::CacheCost(args) => cache_cost(args),
        Command::Interleave(args) => interleave(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvcache: {e}");
            ExitCode::FAILURE
        }
    }
}
