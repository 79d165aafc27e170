//! `fleet trace ID` and `fleet traces`: the terminal waterfall and the trace list. Both speak
//! Tempo's HTTP API, so they read from the trace desk and from a real Tempo alike.

pub mod list;
pub mod model;
pub mod render;
pub mod tree;

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;

const DEFAULT_TEMPO: &str = "http://127.0.0.1:3200";

#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Trace id (hex; shorter ids are left-padded with zeros, as Tempo does).
    id: String,
    /// Tempo (or trace desk) base URL.
    #[arg(long, default_value = DEFAULT_TEMPO, env = "FLEET_TEMPO_URL")]
    tempo: String,
    /// Line width the columns and bars are fitted to.
    #[arg(long, env = "COLUMNS", default_value_t = 120)]
    width: usize,
    /// No ANSI colours (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long)]
    no_color: bool,
    /// Print key attributes (http.route, status codes, rpc.method, db.query.text, error.type)
    /// under each span.
    #[arg(long)]
    attrs: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TracesArgs {
    /// Tempo (or trace desk) base URL.
    #[arg(long, default_value = DEFAULT_TEMPO, env = "FLEET_TEMPO_URL")]
    tempo: String,
    /// TraceQL query, e.g. '{ status = error }' (default: every trace).
    #[arg(long, short)]
    query: Option<String>,
    /// How many traces to ask Tempo for (newest first); default 20, or 500 with --slowest.
    #[arg(long)]
    limit: Option<usize>,
    /// Sort what Tempo returned by duration and keep the N longest.
    #[arg(long, value_name = "N")]
    slowest: Option<usize>,
    /// Only traces from this far back until now (e.g. 15m, 2h, 1d); default: no time range,
    /// which in Tempo means the recent data still in the ingesters.
    #[arg(long)]
    since: Option<String>,
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

fn base(tempo: &str) -> String {
    tempo.trim_end_matches('/').to_owned()
}

/// GETs `url` and returns status and body text; unreachable servers are an error naming them.
async fn get(
    client: &reqwest::Client,
    tempo: &str,
    url: reqwest::Url,
) -> anyhow::Result<(u16, String)> {
    let resp = client
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .with_context(|| format!("cannot reach Tempo at {tempo} (GET {url})"))?;
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of GET {url}"))?;
    Ok((status, body))
}

fn parse_url(s: &str) -> anyhow::Result<reqwest::Url> {
    reqwest::Url::parse(s)
        .with_context(|| format!("{s:?} is not a URL (use e.g. --tempo http://127.0.0.1:3200)"))
}

/// A trace id as 32 lowercase hex digits.
fn normalize_id(id: &str) -> anyhow::Result<String> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{id:?} is not a trace id (1 to 32 hex digits)");
    }
    Ok(format!("{id:0>32}"))
}

fn color_wanted(no_color: bool) -> bool {
    !no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal()
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// Fetches a trace: `/api/traces/{id}` (v1), falling back to `/api/v2/traces/{id}`.
async fn fetch_trace(tempo: &str, id: &str) -> anyhow::Result<Vec<model::Span>> {
    let client = client()?;
    let b = base(tempo);
    let v1 = parse_url(&format!("{b}/api/traces/{id}"))?;
    let (status, body) = get(&client, tempo, v1).await?;
    let (status, body) = if status == 200 {
        (status, body)
    } else {
        // Some frontends only serve v2; keep v1's answer if v2 does not help.
        let v2 = parse_url(&format!("{b}/api/v2/traces/{id}"))?;
        match get(&client, tempo, v2).await {
            Ok((200, v2_body)) => (200, v2_body),
            _ => (status, body),
        }
    };
    match status {
        200 => {}
        404 => bail!("trace {id} not found at {tempo} (404: {})", body.trim()),
        _ => bail!("Tempo at {tempo} answered {status}: {}", body.trim()),
    }
    let json: Value = serde_json::from_str(&body)
        .with_context(|| format!("the answer for trace {id} is not JSON"))?;
    if json.get("trace").is_some_and(Value::is_null) {
        bail!("trace {id} not found at {tempo} (empty v2 answer)");
    }
    model::parse_trace(&json).with_context(|| format!("reading trace {id} from {tempo}"))
}

/// Prints the error chain on one line (no backtrace) and exits with status 1.
fn exit_on_error(command: &str, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(e) = result {
        eprintln!("fleet {command}: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

pub async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    exit_on_error("trace", show_trace(args).await)
}

pub async fn traces(args: TracesArgs) -> anyhow::Result<()> {
    exit_on_error("traces", list_traces(args).await)
}

async fn show_trace(args: TraceArgs) -> anyhow::Result<()> {
    let id = normalize_id(&args.id)?;
    let spans = fetch_trace(&args.tempo, &id).await?;
    if spans.is_empty() {
        bail!("trace {id} at {} has no spans", args.tempo);
    }
    let text = render::waterfall(
        &id,
        &spans,
        render::Options {
            width: args.width,
            color: color_wanted(args.no_color),
            attrs: args.attrs,
        },
    );
    print(&text)
}

async fn list_traces(args: TracesArgs) -> anyhow::Result<()> {
    let limit = args
        .limit
        .unwrap_or(if args.slowest.is_some() { 500 } else { 20 });
    let mut url = parse_url(&format!("{}/api/search", base(&args.tempo)))?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(query) = &args.query {
            q.append_pair("q", query);
        }
        q.append_pair("limit", &limit.to_string());
        if let Some(since) = &args.since {
            let back = list::parse_since(since)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs();
            q.append_pair("start", &now.saturating_sub(back).to_string());
            q.append_pair("end", &now.to_string());
        }
    }
    let (status, body) = get(&client()?, &args.tempo, url).await?;
    match status {
        200 => {}
        400 => bail!(
            "Tempo at {} rejected the search (400 Bad Request): {}",
            args.tempo,
            body.trim()
        ),
        _ => bail!("Tempo at {} answered {status}: {}", args.tempo, body.trim()),
    }
    let json: Value = serde_json::from_str(&body).context("the search answer is not JSON")?;
    let mut found = list::parse_search(&json)?;
    let fetched = found.len();
    if let Some(n) = args.slowest {
        found = list::slowest(found, n);
    }
    if found.is_empty() {
        return print("no traces found\n");
    }
    let mut text = list::table(&found);
    let what = match args.slowest {
        Some(_) => format!(
            "{} slowest of {fetched} trace{} (longest first)",
            found.len(),
            if fetched == 1 { "" } else { "s" }
        ),
        None => format!(
            "{} trace{} (newest first)",
            found.len(),
            if found.len() == 1 { "" } else { "s" }
        ),
    };
    let tempo_flag = if args.tempo == DEFAULT_TEMPO {
        String::new()
    } else {
        format!(" --tempo {}", args.tempo)
    };
    text.push_str(&format!(
        "\n{what}; see one as a waterfall:\n  fleet trace {}{tempo_flag}\n",
        found[0].trace_id
    ));
    print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_padded_and_checked() {
        assert_eq!(
            normalize_id("ABC").unwrap(),
            format!("{}abc", "0".repeat(29))
        );
        assert!(normalize_id("xyz").is_err());
        assert!(normalize_id(&"1".repeat(33)).is_err());
        assert!(normalize_id("").is_err());
    }
}
