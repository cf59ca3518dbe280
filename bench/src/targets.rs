//! The targets, read against the figures of the run that measured them: each line gives the
//! target, the figure and whether it is met, computed, never written by hand.

use std::collections::BTreeMap;

use crate::Plan;

/// The line before the targets' rows in the output of `crudp-bench run`.
pub(crate) const START: &str = "<!-- targets -->";
/// The line after them.
pub(crate) const END: &str = "<!-- /targets -->";

/// The figures of one run, by name (`creates crudp /call 1000`, `bytes postcard (L)`, ...).
#[derive(Default)]
pub(crate) struct Figures(BTreeMap<String, f64>);

impl Figures {
    pub(crate) fn set(&mut self, name: &str, value: f64) {
        self.0.insert(name.to_owned(), value);
    }

    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied().filter(|v| v.is_finite())
    }

    /// `a ÷ b`, NaN when either was not measured.
    pub(crate) fn ratio(&self, a: &str, b: &str) -> f64 {
        match (self.get(a), self.get(b)) {
            (Some(a), Some(b)) if b != 0.0 => a / b,
            _ => f64::NAN,
        }
    }

    /// The larger of two figures, and which it was.
    fn best<'a>(&self, a: (&'a str, String), b: (&'a str, String)) -> Option<(&'a str, f64)> {
        let a = self.get(&a.1).map(|v| (a.0, v));
        let b = self.get(&b.1).map(|v| (b.0, v));
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.1 >= b.1 { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

/// A ratio for a table: `0.24×`, or `–` when not measured.
pub(crate) fn times(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}×")
    } else {
        "–".to_owned()
    }
}

/// Which way a figure must go.
#[derive(Clone, Copy)]
pub(crate) enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, figure: f64) -> bool {
        match self {
            Self::AtLeast(goal) => figure >= goal,
            Self::AtMost(goal) => figure <= goal,
        }
    }
}

/// One row of the targets table: `| what | target | figure | verdict |`.
pub(crate) fn row(what: &str, goal: Goal, figure: Option<f64>, unit: Unit) -> String {
    let target = match goal {
        Goal::AtLeast(goal) => format!("≥ {}", unit.show(goal)),
        Goal::AtMost(goal) => format!("≤ {}", unit.show(goal)),
    };
    match figure.filter(|f| f.is_finite()) {
        Some(figure) => format!(
            "| {what} | {target} | {} | {} |\n",
            unit.show(figure),
            if goal.met(figure) {
                "met"
            } else {
                "**missed**"
            }
        ),
        None => format!("| {what} | {target} | – | not measured in this run |\n"),
    }
}

/// How a figure reads.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    /// A ratio: `0.24×`.
    Ratio,
    /// Bytes, shown in KiB.
    KiB,
    /// Bytes, shown in MiB.
    Mib,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Self::Ratio => format!("{value:.2}×"),
            Self::KiB => format!("{:.1} KiB", value / 1024.0),
            Self::Mib => format!("{:.1} MiB", value / f64::from(1 << 20)),
        }
    }
}

/// The rows of every target the run measures (the wasm size is measured by `cargo xtask
/// bench`, which adds its row).
pub(crate) fn rows(figures: &Figures, plan: &Plan) -> String {
    use Goal::{AtLeast, AtMost};
    use Unit::{KiB, Ratio};
    let mut rows = String::new();
    let creates = |variant: &str, n: usize| format!("creates {variant} {n}");
    let ratio = |a: &str, b: &str| Some(figures.ratio(a, b));
    let big = 1000;
    rows.push_str(&row(
        "creates through `/call`, N = 1,000, ÷ postcard (L)",
        AtLeast(0.7),
        ratio(&creates("crudp /call", big), &creates("postcard (L)", big)),
        Ratio,
    ));
    rows.push_str(&row(
        "one call alone (N = 1) through `/call` ÷ plain axum JSON (a)",
        AtLeast(1.0),
        ratio(&creates("crudp /call", 1), &creates("json (a)", 1)),
        Ratio,
    ));
    for (n, goal) in [(1, 1.2), (10, 1.2), (big, 4.0)] {
        let best = figures.best(
            ("jsonrpsee", creates(crate::load::JSONRPSEE, n)),
            ("tarpc", creates(crate::load::TARPC, n)),
        );
        let against = |variant: &str| {
            best.and_then(|(_, rate)| figures.get(&creates(variant, n)).map(|v| v / rate))
        };
        for path in ["/call", "/sync"] {
            let what = match best {
                Some((peer, _)) => {
                    format!("N = {n} through `{path}` ÷ the best typed-RPC peer (here {peer})")
                }
                None => format!("N = {n} through `{path}` ÷ the best typed-RPC peer"),
            };
            let figure = against(&format!("crudp {path}"));
            rows.push_str(&row(&what, AtLeast(goal), figure, Ratio));
        }
        // One HTTP round trip per batch: the hand-rolled postcard batch takes no less.
        rows.push_str(&row(
            &format!("… the floor under it over HTTP: postcard (L) at N = {n} ÷ the same peer"),
            AtLeast(goal),
            against("postcard (L)"),
            Ratio,
        ));
    }
    rows.push_str(&row(
        "creates through `/sync` (results over the event stream), N = 1,000, ÷ postcard (L)",
        AtLeast(0.5),
        ratio(&creates("crudp /sync", big), &creates("postcard (L)", big)),
        Ratio,
    ));
    rows.push_str(&row(
        "creates through `/call`, N = 1,000, ÷ plain JSON one at a time (a)",
        AtLeast(50.0),
        ratio(&creates("crudp /call", big), &creates("json (a)", big)),
        Ratio,
    ));
    rows.push_str(&row(
        "creates through `/call`, N = 1,000, ÷ plain JSON 16 in flight (b)",
        AtLeast(20.0),
        ratio(&creates("crudp /call", big), &creates("json x16 (b)", big)),
        Ratio,
    ));
    for (path, goal) in [("/call", 1.15), ("/sync", 1.3)] {
        rows.push_str(&row(
            &format!("bytes on the wire for 1,000 creates, both ways, `{path}` ÷ postcard (L)"),
            AtMost(goal),
            ratio(
                &format!("bytes crudp {path} {big}"),
                &format!("bytes postcard (L) {big}"),
            ),
            Ratio,
        ));
        rows.push_str(&row(
            &format!("bytes on the wire for 1,000 creates, both ways, `{path}` ÷ JSON (a)"),
            AtMost(0.2),
            ratio(
                &format!("bytes crudp {path} {big}"),
                &format!("bytes json (a) {big}"),
            ),
            Ratio,
        ));
    }
    let streams = 19_000;
    let fan_out = plan.fan_out.contains(&streams);
    rows.push_str(&row(
        "server memory per idle event stream at 19,000 streams",
        AtMost(8.0 * 1024.0),
        figures
            .get(&format!("fanout memory crudp {streams}"))
            .filter(|_| fan_out),
        KiB,
    ));
    rows.push_str(&row(
        "… the floor under it: an idle response and nothing else, as `serve` holds it",
        AtMost(8.0 * 1024.0),
        figures
            .get(&format!("fanout memory floor {streams}"))
            .filter(|_| fan_out),
        KiB,
    ));
    rows.push_str(&row(
        "… the floor under any HTTP server: a tokio task holding the socket after a fixed answer",
        AtMost(8.0 * 1024.0),
        figures
            .get(&format!("fanout memory sockets {streams}"))
            .filter(|_| fan_out),
        KiB,
    ));
    rows.push_str(&row(
        "publish-to-all p99 at 19,000 streams ÷ axum `Sse` + `broadcast`",
        AtMost(0.5),
        ratio(
            &format!("fanout p99 crudp {streams}"),
            &format!("fanout p99 naive {streams}"),
        ),
        Ratio,
    ));
    rows.push_str(&row(
        "… the floor under it: one loop writing the event to each socket ÷ the same",
        AtMost(0.5),
        ratio(
            &format!("fanout p99 writes {streams}"),
            &format!("fanout p99 naive {streams}"),
        ),
        Ratio,
    ));
    rows.push_str(&row(
        "publish-to-all p99 at 5,000 streams, on Redis ÷ in memory",
        AtMost(2.0),
        ratio("fanout p99 redis 5000", "fanout p99 crudp 5000"),
        Ratio,
    ));
    rows.push_str(&row(
        "generated dispatch ÷ hand-written `match` (interleaved)",
        AtMost(1.05),
        ratio("dispatch generated", "dispatch hand-written"),
        Ratio,
    ));
    rows.push_str(&row(
        "`/call` N = 1,000 with the SQLite store ÷ in memory",
        AtLeast(0.5),
        ratio(
            &format!("stores crudp /call, SQLite {big}"),
            &format!("stores crudp /call {big}"),
        ),
        Ratio,
    ));
    rows.push_str(&row(
        "`/call` N = 1,000 with the Redis store ÷ in memory",
        AtLeast(0.4),
        ratio(
            &format!("stores crudp /call, Redis {big}"),
            &format!("stores crudp /call {big}"),
        ),
        Ratio,
    ));
    rows.push_str(&row(
        "upload of one file ÷ plain axum to a file",
        AtLeast(0.8),
        ratio(
            &format!("upload {}", crate::upload::VARIANTS[1]),
            &format!("upload {}", crate::upload::VARIANTS[0]),
        ),
        Ratio,
    ));
    rows.push_str(&row(
        "server peak memory during the upload",
        AtMost(64.0 * 1024.0 * 1024.0),
        figures.get(&format!("upload peak {}", crate::upload::VARIANTS[1])),
        Unit::Mib,
    ));
    rows
}
