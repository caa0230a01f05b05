//! The `pbxtap` command: `run`, `check-config`, `status`, `demo`, `--version`.

use std::path::PathBuf;
use std::process::ExitCode;

use pbxtap::config::{self, Config};

/// Each command's synopsis and what it does: `--help` shows them all, `COMMAND --help` its
/// own. Continuation lines are indented to the column the descriptions start at.
const COMMANDS: [(&str, &str); 7] = [
    (
        "run",
        "pbxtap run [--config FILE]     tap Asterisk's AMI and forward events to the configured sinks",
    ),
    (
        "check-config",
        "pbxtap check-config [--bind] [FILE]
                                      validate a config file (exit 0 when valid); with
                                      --bind, also listen on each sink's address and let go",
    ),
    (
        "status",
        "pbxtap status [--address HOST:PORT] [FILE]
                                      a running daemon's state, read from its metrics
                                      endpoint ([metrics] in FILE, or the address given)",
    ),
    (
        "demo",
        "pbxtap demo [--fast] [--portsip]
                                      recorded calls through the pipeline to stdout and a
                                      WebSocket feed, at their recorded pace until Ctrl-C
                                      (--fast: once, at full speed); --portsip adds the
                                      PortSIP feed",
    ),
    (
        "capture",
        "pbxtap capture [--config FILE] [--duration SECS] [--max-bytes N] [--redact VALUE]... OUTPUT
                                      write what Asterisk's AMI says to OUTPUT (a new file)
                                      for a bug report, until Ctrl-C, SECS or N bytes (64 MiB);
                                      read-only: login, a version query, Logoff; each VALUE
                                      (a number, a name) is replaced by a placeholder",
    ),
    (
        "replay",
        "pbxtap replay [--config FILE] [--paced] CAPTURE
                                      a capture (or a recording) through the real pipeline:
                                      events to stdout, or to the sinks FILE names; --paced:
                                      at the recorded pace",
    ),
    ("--version", "pbxtap --version"),
];

const FOOTER: &str = "\
FILE defaults to /etc/pbxtap/pbxtap.toml. Environment variables (PBXTAP_AMI_ADDRESS, ...,
NATS_PUBLISHER_*) override the file; see README.md.";

/// The usage of every command, or of `only`.
fn usage(only: Option<&str>) -> String {
    let mut out = String::from("usage: ");
    let shown = COMMANDS
        .iter()
        .filter(|(name, _)| only.is_none_or(|o| o == *name));
    for (i, (_, synopsis)) in shown.enumerate() {
        if i > 0 {
            out.push_str("\n       ");
        }
        out.push_str(synopsis);
    }
    out + "\n\n" + FOOTER
}

/// The command `args` name, if pbxtap has it.
fn command_of(args: &[String]) -> Option<&'static str> {
    let first = args.first()?;
    COMMANDS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| name == first)
}

enum Command {
    Run(PathBuf),
    /// The file, and whether to try the listening addresses.
    CheckConfig(PathBuf, bool),
    /// The metrics address given, or the config file naming it.
    Status(Result<String, PathBuf>),
    Demo(pbxtap::app::demo::Options),
    /// The config file, and what to capture.
    Capture(PathBuf, pbxtap::app::capture::Options),
    /// The config file, if one is named, and what to replay.
    Replay(Option<PathBuf>, pbxtap::app::replay::Options),
    Version,
    /// Every command's usage, or one command's.
    Help(Option<&'static str>),
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let default = || PathBuf::from(config::DEFAULT_PATH);
    if let Some(command) = command_of(args) {
        if args[1..].iter().any(|a| a == "--help" || a == "-h") {
            return Ok(Command::Help(Some(command)));
        }
    }
    match args {
        [] => Err("a command is needed".into()),
        [v] if v == "--version" || v == "-V" || v == "version" => Ok(Command::Version),
        [v, rest @ ..] if v == "--version" || v == "-V" || v == "version" => {
            Err(format!("unexpected argument `{}` for --version", rest[0]))
        }
        [h, ..] if h == "--help" || h == "-h" || h == "help" => Ok(Command::Help(None)),
        [c, rest @ ..] if c == "run" => match rest {
            [] => Ok(Command::Run(default())),
            [f, file] if f == "--config" || f == "-c" => Ok(Command::Run(file.into())),
            [f] if f == "--config" || f == "-c" => Err(format!("{f} needs a file name")),
            other => Err(format!("unexpected argument `{}` for run", other[0])),
        },
        [c, rest @ ..] if c == "check-config" => {
            let (bind, rest) = match rest {
                [b, rest @ ..] if b == "--bind" => (true, rest),
                rest => (false, rest),
            };
            match rest {
                [] => Ok(Command::CheckConfig(default(), bind)),
                [file] if !file.starts_with('-') => Ok(Command::CheckConfig(file.into(), bind)),
                // A flag, or what follows the file.
                [first, rest @ ..] => {
                    let bad = if first.starts_with('-') {
                        first
                    } else {
                        &rest[0]
                    };
                    Err(format!("unexpected argument `{bad}` for check-config"))
                }
            }
        }
        [c, rest @ ..] if c == "status" => match rest {
            [] => Ok(Command::Status(Err(default()))),
            [a, addr] if a == "--address" => Ok(Command::Status(Ok(addr.clone()))),
            [a] if a == "--address" => Err("--address needs HOST:PORT".into()),
            [file] if !file.starts_with('-') => Ok(Command::Status(Err(file.into()))),
            other => Err(format!("unexpected argument `{}` for status", other[0])),
        },
        [c, rest @ ..] if c == "demo" => {
            let mut opts = pbxtap::app::demo::Options::default();
            for a in rest {
                match a.as_str() {
                    "--fast" => opts.fast = true,
                    "--portsip" => opts.portsip = true,
                    other => return Err(format!("unexpected argument `{other}` for demo")),
                }
            }
            Ok(Command::Demo(opts))
        }
        [c, rest @ ..] if c == "capture" => parse_capture(rest),
        [c, rest @ ..] if c == "replay" => parse_replay(rest),
        [other, ..] => Err(format!("unknown command `{other}`")),
    }
}

/// The value after flag `flag`, from `args`.
fn value_of<'a>(flag: &str, args: &mut std::slice::Iter<'a, String>) -> Result<&'a String, String> {
    args.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn parse_capture(args: &[String]) -> Result<Command, String> {
    let mut config = PathBuf::from(config::DEFAULT_PATH);
    let mut opts = pbxtap::app::capture::Options {
        output: PathBuf::new(),
        duration: None,
        max_bytes: pbxtap::app::capture::DEFAULT_MAX_BYTES,
        redact: Vec::new(),
    };
    let mut output = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => config = value_of(a, &mut it)?.into(),
            "--duration" => {
                let v = value_of(a, &mut it)?;
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("--duration `{v}`: seconds, more than 0"))?;
                opts.duration = Some(std::time::Duration::from_secs(secs));
            }
            "--max-bytes" => {
                let v = value_of(a, &mut it)?;
                opts.max_bytes = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--max-bytes `{v}`: bytes, more than 0"))?;
            }
            "--redact" => opts.redact.push(value_of(a, &mut it)?.clone()),
            flag if flag.starts_with('-') => {
                return Err(format!("unexpected argument `{flag}` for capture"))
            }
            file if output.is_none() => output = Some(PathBuf::from(file)),
            extra => return Err(format!("unexpected argument `{extra}` for capture")),
        }
    }
    opts.output = output.ok_or("capture needs the OUTPUT file to write")?;
    Ok(Command::Capture(config, opts))
}

fn parse_replay(args: &[String]) -> Result<Command, String> {
    let mut config = None;
    let mut paced = false;
    let mut file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => config = Some(value_of(a, &mut it)?.into()),
            "--paced" => paced = true,
            flag if flag.starts_with('-') => {
                return Err(format!("unexpected argument `{flag}` for replay"))
            }
            f if file.is_none() => file = Some(PathBuf::from(f)),
            extra => return Err(format!("unexpected argument `{extra}` for replay")),
        }
    }
    let file = file.ok_or("replay needs the CAPTURE file to play")?;
    Ok(Command::Replay(
        config,
        pbxtap::app::replay::Options { file, paced },
    ))
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// The config at `path` with the environment's overrides; an invalid one is said on
/// stderr after `who` (exit 1).
fn load(path: &std::path::Path, who: &str) -> Result<Config, ExitCode> {
    Config::load(path, &env).map_err(|e| {
        eprintln!("{who}: invalid config: {e}");
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pbxtap: {e}\n\n{}", usage(command_of(&args)));
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Version => {
            println!("pbxtap {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help(only) => {
            println!("{}", usage(only));
            ExitCode::SUCCESS
        }
        Command::CheckConfig(path, bind) => match load(&path, "pbxtap") {
            Ok(cfg) => check_listening(&path, &cfg, bind),
            Err(code) => code,
        },
        Command::Status(at) => status(at),
        Command::Run(path) => {
            let cfg = match load(&path, "pbxtap") {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            pbxtap::logging::init(&cfg.log);
            run_async(pbxtap::app::run(cfg, path))
        }
        Command::Demo(opts) => {
            pbxtap::logging::init_demo();
            run_async(pbxtap::app::demo::run(opts))
        }
        Command::Capture(path, opts) => {
            let cfg = match load(&path, "pbxtap capture") {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            run_async(async move {
                let stop = pbxtap::app::termination();
                let summary = pbxtap::app::capture::run(cfg, opts, stop).await?;
                eprintln!("{summary}");
                Ok(())
            })
        }
        Command::Replay(path, opts) => {
            let cfg = match path {
                None => Config {
                    host: "replay".into(),
                    sinks: vec![pbxtap::sink::SinkConfig::Stdout(Default::default())],
                    ..Config::default()
                },
                Some(path) => match load(&path, "pbxtap replay") {
                    Ok(cfg) => cfg,
                    Err(code) => return code,
                },
            };
            let recording = match pbxtap::app::replay::read(&opts.file) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("pbxtap replay: {e:#}");
                    return ExitCode::from(1);
                }
            };
            pbxtap::logging::init_demo();
            run_async(pbxtap::app::replay::run(cfg, recording, opts.paced))
        }
    }
}

/// `status`: fetches the metrics page and prints its summary; exit 1 when it cannot.
fn status(at: Result<String, PathBuf>) -> ExitCode {
    let address = match at {
        Ok(a) => a,
        // Only `[metrics]` is read: no secrets, so an admin who may not read them can ask.
        Err(path) => match pbxtap::settings::read_limited(&path, config::MAX_CONFIG_FILE)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|text| Config::parse(&text).map_err(|e| e.to_string()))
        {
            Ok(cfg) if cfg.metrics.enabled => cfg.metrics.listen,
            Ok(_) => {
                eprintln!("pbxtap: metrics.enabled is false in {}: status reads the metrics endpoint; set [metrics] enabled = true (and restart), or pass --address", path.display());
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("pbxtap: {e}");
                return ExitCode::from(1);
            }
        },
    };
    match pbxtap::metrics::fetch(&address, std::time::Duration::from_secs(5)) {
        Ok(scrape) => {
            print!("{}", scrape.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pbxtap: {e}");
            ExitCode::from(1)
        }
    }
}

/// `check-config` on a valid file: says so, and what it did not try (the listening
/// addresses), or, with `bind`, listens on each and lets go.
fn check_listening(path: &std::path::Path, cfg: &Config, bind: bool) -> ExitCode {
    let kinds: Vec<&str> = cfg.sinks.iter().map(|s| s.kind()).collect();
    let listens: Vec<(usize, &str)> = cfg
        .sinks
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s.listen_address()?)))
        .collect();
    if bind {
        for (i, address) in &listens {
            if let Err(e) = std::net::TcpListener::bind(address) {
                eprintln!("pbxtap: sinks[{i}].listen: cannot listen on {address}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut said = format!(
        "{}: valid ({} sink{}: {})",
        path.display(),
        kinds.len(),
        if kinds.len() == 1 { "" } else { "s" },
        kinds.join(", ")
    );
    let addresses = listens
        .iter()
        .map(|(_, a)| *a)
        .collect::<Vec<_>>()
        .join(", ");
    if !listens.is_empty() && bind {
        said.push_str(&format!("; listening on {addresses} works"));
    } else if !listens.is_empty() {
        said.push_str(&format!(
            "; listening on {addresses} not tried (--bind tries it)"
        ));
    }
    println!("{said}");
    ExitCode::SUCCESS
}

/// An error and its causes on one line, leaving out a cause whose text is already said
/// (error types that print their source would otherwise repeat it).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pbxtap: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(fut);
    // A sink stopped at the drain deadline may leave a write to a stuck reader behind.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = describe(&e);
            tracing::error!("{e}");
            eprintln!("pbxtap: {e}");
            ExitCode::from(1)
        }
    }
}
