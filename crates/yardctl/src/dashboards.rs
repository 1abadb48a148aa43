//! `yardctl dashboards check`: every panel of the Grafana dashboards asks the running Prometheus
//! its query, over the last minutes, the way Grafana would. A query that errors or returns no series
//! fails the check: a dashboard with an empty panel is a dashboard that lies by omission.

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::Context;
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum DashboardsCommand {
    /// Run every panel's query against Prometheus; fail on any error or empty result.
    Check {
        /// The dashboards' folder.
        #[arg(long, default_value = "deploy/grafana")]
        dir: String,
        /// How far back each query looks, in minutes.
        #[arg(long, default_value_t = 15)]
        minutes: i64,
    },
}

/// One query of one panel.
#[derive(Debug, PartialEq)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub expr: String,
}

/// Every target's query of every panel (rows' nested panels included), with Grafana's variables
/// put as Grafana would for "All": `$__rate_interval` one minute, `$__range` the window, a
/// dashboard variable its `allValue`.
pub fn queries(dashboard: &Value, minutes: i64) -> anyhow::Result<Vec<PanelQuery>> {
    let title = dashboard["title"].as_str().unwrap_or("?").to_string();
    let mut vars: Vec<(String, String)> = vec![
        ("__rate_interval".into(), "1m".into()),
        ("__interval".into(), "15s".into()),
        ("__range".into(), format!("{minutes}m")),
    ];
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "datasource" {
            continue;
        }
        let name = v["name"].as_str().context("a variable without a name")?;
        let all = v["allValue"]
            .as_str()
            .with_context(|| format!("{title}: variable `{name}` has no allValue"))?;
        vars.push((name.to_string(), all.to_string()));
    }
    // Longest names first: `$__range` is not `$__rate_interval`'s prefix, but a `$service` would be
    // `$services`'s.
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let mut panels = Vec::new();
    in_order(&dashboard["panels"], &mut panels);
    let mut out = Vec::new();
    for p in panels {
        let panel = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            let Some(expr) = t["expr"].as_str() else { continue };
            let mut expr = expr.to_string();
            for (name, value) in &vars {
                expr = expr
                    .replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value);
            }
            anyhow::ensure!(!expr.contains('$'), "{title} / {panel}: a variable left in `{expr}`");
            out.push(PanelQuery {
                dashboard: title.clone(),
                panel: panel.to_string(),
                expr,
            });
        }
    }
    Ok(out)
}

/// Panels in the order they are laid out, each row's own panels after it.
fn in_order<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p);
        in_order(&p["panels"], out);
    }
}

pub async fn run(command: DashboardsCommand) -> anyhow::Result<ExitCode> {
    let DashboardsCommand::Check { dir, minutes } = command;
    let prometheus = std::env::var("PROMETHEUS_URL").unwrap_or_else(|_| "http://127.0.0.1:9090".into());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {dir}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no dashboards in {dir}");
    let end = chrono::Utc::now().timestamp();
    let start = end - minutes * 60;
    let (mut failed, mut total) = (0, 0);
    for file in &files {
        let dashboard = read(file)?;
        for q in queries(&dashboard, minutes)? {
            total += 1;
            let verdict = match range_query(&http, &prometheus, &q.expr, start, end).await {
                Ok(0) => Err("no data".to_string()),
                Ok(n) => Ok(n),
                Err(e) => Err(e.to_string()),
            };
            match verdict {
                Ok(n) => println!("  ok    {:>3} series  {} / {}", n, q.dashboard, q.panel),
                Err(why) => {
                    failed += 1;
                    println!("  FAIL  {why}  {} / {}\n        {}", q.dashboard, q.panel, q.expr);
                }
            }
        }
    }
    println!(
        "dashboards: {} files, {total} panel queries, {failed} empty or failing (Prometheus {prometheus}, last {minutes} min)",
        files.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read(file: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))
}

/// The number of series the query returns over `start..end`.
async fn range_query(
    http: &reqwest::Client,
    prometheus: &str,
    expr: &str,
    start: i64,
    end: i64,
) -> anyhow::Result<usize> {
    let answer: Value = http
        .post(format!("{prometheus}/api/v1/query_range"))
        .form(&[
            ("query", expr.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", "15".to_string()),
        ])
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(
        answer["status"] == "success",
        "{}: {}",
        answer["errorType"].as_str().unwrap_or("error"),
        answer["error"].as_str().unwrap_or("?")
    );
    Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_panel_s_queries_are_found_with_variables_put_as_for_all() {
        let d = serde_json::json!({
            "title": "D",
            "templating": {"list": [
                {"name": "datasource", "type": "datasource"},
                {"name": "partner", "type": "query", "allValue": ".+"}
            ]},
            "panels": [
                {"type": "row", "title": "r", "panels": [
                    {"title": "nested", "targets": [{"expr": "up{p=~\"${partner}\"}"}]}
                ]},
                {"title": "a", "targets": [
                    {"expr": "rate(x{partner=~\"$partner\"}[$__rate_interval])"},
                    {"expr": "increase(y[$__range])"}
                ]}
            ]
        });
        let q = queries(&d, 15).unwrap();
        let exprs: Vec<&str> = q.iter().map(|q| q.expr.as_str()).collect();
        assert_eq!(
            exprs,
            ["up{p=~\".+\"}", "rate(x{partner=~\".+\"}[1m])", "increase(y[15m])"]
        );
        assert_eq!(q[0].panel, "nested");
    }

    #[test]
    fn a_variable_without_an_all_value_or_left_unknown_is_refused() {
        let d =
            serde_json::json!({"title": "D", "templating": {"list": [{"name": "v", "type": "query"}]}, "panels": []});
        assert!(queries(&d, 15).is_err());
        let d = serde_json::json!({"title": "D", "panels": [{"title": "p", "targets": [{"expr": "x{a=\"$nope\"}"}]}]});
        assert!(queries(&d, 15).is_err());
    }

    /// The project's own dashboards parse, and every panel has a query.
    #[test]
    fn the_project_s_dashboards_have_a_query_in_every_panel() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana");
        for name in ["mesh-overview", "partner-scorecard", "service"] {
            let d = read(&dir.join(format!("{name}.json"))).unwrap();
            let q = queries(&d, 15).unwrap();
            assert!(q.len() >= 10, "{name}: {} queries", q.len());
            for p in d["panels"].as_array().unwrap() {
                if p["type"] != "row" {
                    assert!(p["targets"].as_array().is_some_and(|t| !t.is_empty()), "{name}: {p}");
                }
            }
        }
    }
}
