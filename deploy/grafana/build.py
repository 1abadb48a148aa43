#!/usr/bin/env python3
"""Writes the Grafana dashboards (mesh-overview.json, partner-scorecard.json, service.json) beside
this file. Edit the panels here, run it, commit both. `yardctl dashboards check` (in `make test`)
asks the local Prometheus every panel's query after the demo and fails on an empty one."""
import json
import os

OUT = os.path.dirname(os.path.abspath(__file__))
R = "$__rate_interval"

def ds():
    return {"type": "prometheus", "uid": "${datasource}"}

class Board:
    def __init__(self, uid, title, desc, tags, variables):
        self.uid, self.title, self.desc, self.tags = uid, title, desc, tags
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1
        self.variables = variables
    def row(self, title):
        self.newline()
        self.panels.append({"type": "row", "title": title, "id": self.nid(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1
    def newline(self):
        if self.x:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
    def nid(self):
        i = self.next_id; self.next_id += 1; return i
    def panel(self, kind, title, desc, targets, w=12, h=8, unit=None, extra=None):
        if self.x + w > 24:
            self.newline()
        p = {"type": kind, "title": title, "description": desc, "id": self.nid(), "datasource": ds(),
             "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
             "targets": [dict({"datasource": ds(), "refId": chr(65 + i)}, **t) for i, t in enumerate(targets)],
             "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
        if unit:
            p["fieldConfig"]["defaults"]["unit"] = unit
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
                            "tooltip": {"mode": "multi"}}
        if kind == "table":
            for t in p["targets"]:
                t["format"] = "table"; t["instant"] = True
        if extra:
            for k, v in extra.items():
                p[k] = v
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)
    def json(self):
        tmpl = [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
                 "current": {}, "hide": 0}]
        for name, label, query in self.variables:
            tmpl.append({"name": name, "label": label, "type": "query", "datasource": ds(),
                         "query": {"query": query, "refId": "v"}, "definition": query,
                         "refresh": 2, "multi": True, "includeAll": True, "allValue": ".+",
                         "current": {"text": "All", "value": "$__all"}, "sort": 1, "hide": 0})
        return {"uid": self.uid, "title": self.title, "description": self.desc, "tags": self.tags,
                "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1,
                "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "timezone": "utc",
                "templating": {"list": tmpl}, "annotations": {"list": []}, "links": [
                    {"title": "Mesh overview", "type": "link", "url": "/d/switchyard-mesh", "keepTime": True},
                    {"title": "Partner scorecard", "type": "link", "url": "/d/switchyard-partners", "keepTime": True},
                    {"title": "Service", "type": "link", "url": "/d/switchyard-service", "keepTime": True}],
                "panels": self.panels}

def t(expr, legend=""):
    return {"expr": expr, "legendFormat": legend}

# ---------------------------------------------------------------- mesh overview
b = Board("switchyard-mesh", "Switchyard / Mesh overview",
          "Flows, their outcomes and durations, consumer lag, dead letters, the outbox and the error budget.",
          ["switchyard"], [])
b.row("Flows")
b.panel("timeseries", "Flows started", "Commands accepted by ingress, per second, by topic.",
        [t(f'sum by (topic) (rate(switchyard_messages_produced_total{{service="ingress",topic=~".+\\\\.commands\\\\.v1"}}[{R}]))', "{{topic}}")], unit="reqps")
b.panel("timeseries", "Flows decided, by outcome", "Flows completed per second, by flow and outcome; `fault=platform` marks failures of ours.",
        [t(f'sum by (flow, outcome, fault) (rate(switchyard_flows_completed_total[{R}]))', "{{flow}} {{outcome}} {{fault}}")], unit="reqps")
b.panel("timeseries", "Flow duration p50 / p95 / p99", "From a flow's start to its decision; `waited` flows waited on a person (documents, a reviewer), `straight` ones did not (the latency objective's).",
        [t(f'histogram_quantile({q}, sum by (le, flow, path) (rate(switchyard_flow_duration_seconds_bucket[{R}])))', f"{{{{flow}}}} {{{{path}}}} p{int(q*100)}") for q in (0.5, 0.95, 0.99)], unit="s")
b.panel("stat", "Error budget left (30 days)", "Share of the month's error budget (99.5% of flows without a failure of ours) not yet spent, by flow.",
        [t('1 - ((sum by (flow) (increase(switchyard_flows_completed_total{fault="platform"}[30d])) or sum by (flow) (increase(switchyard_flows_completed_total[30d])) * 0) / sum by (flow) (increase(switchyard_flows_completed_total[30d]))) / 0.005', "{{flow}}")],
        w=6, unit="percentunit", extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}})
b.panel("timeseries", "Error budget burn rate (1h)", "How many times faster than the budget allows flows fail by our fault (1 spends it in exactly 30 days; the page fires over 14.4).",
        [t('switchyard:flow_errors:ratio_rate1h / 0.005', "{{flow}}")], w=6)
b.row("Kafka")
b.panel("timeseries", "Consumer lag (messages)", "Messages in each group's partitions not yet done.",
        [t('sum by (group) (switchyard_consumer_lag_messages)', "{{group}}")], w=8)
b.panel("timeseries", "Consumer lag (seconds)", "Age of the oldest message each group has not yet done.",
        [t('max by (group) (switchyard_consumer_lag_seconds)', "{{group}}")], w=8, unit="s")
b.panel("timeseries", "Dead letters", "Messages sent to a dead-letter topic per second, by source topic (0 when none).",
        [t(f'sum by (topic) (rate(switchyard_dlq_messages_total[{R}])) or sum(rate(switchyard_messages_consumed_total[{R}])) * 0', "{{topic}}")], w=8, unit="reqps")
b.row("Outbox")
b.panel("timeseries", "Outbox backlog", "Rows committed and not yet published, by service.",
        [t('sum by (service) (switchyard_outbox_pending_rows)', "{{service}}")], w=8)
b.panel("timeseries", "Oldest unpublished row", "Age of each service's oldest unpublished outbox row.",
        [t('max by (service) (switchyard_outbox_oldest_pending_age_seconds)', "{{service}}")], w=8, unit="s")
b.panel("timeseries", "Publish lag p99", "From outbox commit to Kafka acknowledgement.",
        [t(f'histogram_quantile(0.99, sum by (le, service) (rate(switchyard_outbox_publish_lag_seconds_bucket[{R}])))', "{{service}}")], w=8, unit="s")
b.row("Money and alerts")
b.panel("timeseries", "Payouts in doubt or left to an operator", "Payouts whose outcome is not known, by state and partner (0 when none).",
        [t('sum by (state, partner) (switchyard_payouts_unsettled) or vector(0)', "{{state}} {{partner}}")], w=8)
b.panel("timeseries", "Reconciliation findings open", "Open findings by kind.",
        [t('sum by (kind) (switchyard_reconciliation_findings_open)', "{{kind}}")], w=8)
b.panel("timeseries", "Card authorizations", "Real-time authorization requests answered per second, by processor, outcome and who decided (rules, fallback, replayed).",
        [t(f'sum by (partner, outcome, decided_by) (rate(switchyard_card_authorizations_total[{R}]))', "{{partner}} {{outcome}} {{decided_by}}")], w=8)
b.panel("timeseries", "Card decision latency p50 / p99", "From a processor's authorization request arriving to our answer (the processors wait about 3 s before their stand-in rules decide).",
        [t(f'histogram_quantile({q}, sum by (le, partner) (rate(switchyard_card_authorization_seconds_bucket[{R}])))', f"{{{{partner}}}} p{int(q*100)}") for q in (0.5, 0.99)], w=8, unit="s")
b.panel("stat", "Alerts firing", "The project's alert rules firing now (0 when none).",
        [t('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")], w=8,
        extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}})
mesh = b

# ---------------------------------------------------------------- partner scorecard
P = 'partner=~"$partner"'
b = Board("switchyard-partners", "Switchyard / Partner scorecard",
          "Which partner is failing, since when, for which tenants: latency, errors by class, timeouts, circuit, rate limits, webhooks, failovers, shadow agreement.",
          ["switchyard"], [("partner", "Partner", "label_values(switchyard_provider_requests_total, partner)")])
b.row("Health")
b.panel("timeseries", "Error rate by failure class", "Share of calls per partner that failed, by class (transient, rate_limited, ambiguous, rejected, auth, circuit_open); 0 when none.",
        [t(f'(sum by (partner, outcome) (rate(switchyard_provider_requests_total{{{P},outcome!="ok"}}[{R}])) / on (partner) group_left sum by (partner) (rate(switchyard_provider_requests_total{{{P}}}[{R}]))) or sum by (partner) (rate(switchyard_provider_requests_total{{{P}}}[{R}])) * 0', "{{partner}} {{outcome}}")],
        w=12, unit="percentunit")
b.panel("timeseries", "Circuit state", "0 closed, 1 half-open, 2 open.",
        [t(f'max by (partner) (switchyard_provider_circuit_state{{{P}}})', "{{partner}}")], w=12,
        extra={"fieldConfig": {"defaults": {"min": 0, "max": 2, "mappings": [{"type": "value", "options": {"0": {"text": "closed"}, "1": {"text": "half-open"}, "2": {"text": "open"}}}]}, "overrides": []}})
b.panel("timeseries", "Latency p50 / p95 / p99", "Partner call latency, every operation.",
        [t(f'histogram_quantile({q}, sum by (le, partner) (rate(switchyard_provider_request_duration_seconds_bucket{{{P}}}[{R}])))', f"{{{{partner}}}} p{int(q*100)}") for q in (0.5, 0.95, 0.99)], w=12, unit="s")
b.panel("timeseries", "Calls per second", "Every call to the partner, by operation.",
        [t(f'sum by (partner, operation) (rate(switchyard_provider_requests_total{{{P}}}[{R}]))', "{{partner}} {{operation}}")], w=12, unit="reqps")
b.panel("timeseries", "Timeouts", "Calls sent with no answer (the outcome is unknown and asked for later), per second; 0 when none.",
        [t(f'sum by (partner) (rate(switchyard_provider_requests_total{{{P},outcome="ambiguous"}}[{R}])) or sum by (partner) (rate(switchyard_provider_requests_total{{{P}}}[{R}])) * 0', "{{partner}}")], w=8, unit="reqps")
b.panel("timeseries", "Rate-limit hits", "Calls the partner refused for its rate limit, per second; 0 when none.",
        [t(f'sum by (partner) (rate(switchyard_provider_requests_total{{{P},outcome="rate_limited"}}[{R}])) or sum by (partner) (rate(switchyard_provider_requests_total{{{P}}}[{R}])) * 0', "{{partner}}")], w=8, unit="reqps")
b.panel("timeseries", "Calls in doubt resolved", "Earlier calls that may have happened, resolved by asking the partner, by result (0 when none).",
        [t(f'sum by (partner, result) (increase(switchyard_provider_effect_recoveries_total{{{P}}}[1h])) or sum by (partner) (rate(switchyard_provider_requests_total{{{P}}}[{R}])) * 0', "{{partner}} {{result}}")], w=8)
b.row("Webhooks")
b.panel("timeseries", "Webhooks received", "Notices per second, by partner and verdict.",
        [t(f'sum by (partner, verdict) (rate(switchyard_webhooks_received_total{{{P}}}[{R}]))', "{{partner}} {{verdict}}")], w=12, unit="reqps")
b.panel("timeseries", "Webhook delay p50 / p95", "From the partner's own time of a change to our receipt (partners whose notices carry that time).",
        [t(f'histogram_quantile({q}, sum by (le, partner) (rate(switchyard_webhook_delay_seconds_bucket{{{P}}}[{R}])))', f"{{{{partner}}}} p{int(q*100)}") for q in (0.5, 0.95)], w=12, unit="s")
b.row("Failover and shadow")
b.panel("timeseries", "Failovers from / to", "Flows moved off a partner in the last hour, by domain, from and to.",
        [t('sum by (domain, from, to) (increase(switchyard_flow_failovers_total{from=~"$partner"}[1h]))', "{{domain}} {{from}} → {{to}}")], w=12)
b.panel("table", "Tenants moved off a partner (last 24 h)", "Which tenants' flows a failing partner touched.",
        [t('sum by (tenant, from) (increase(switchyard_flow_failovers_total{from=~"$partner"}[24h])) > 0', "")], w=12)
b.panel("timeseries", "Shadow agreement", "Share of a shadow partner's final verdicts that agreed with the live partner's, over the last hour.",
        [t(f'sum by (domain, partner) (increase(switchyard_shadow_comparisons_total{{{P},result="agree"}}[1h])) / sum by (domain, partner) (increase(switchyard_shadow_comparisons_total{{{P}}}[1h]))', "{{domain}} {{partner}}")], w=24, unit="percentunit")
partners = b

# ---------------------------------------------------------------- service
S = 'service=~"$service"'
b = Board("switchyard-service", "Switchyard / Service",
          "One service (or several): messages in and out, handler duration, retries, its consumer, the database pool, memory.",
          ["switchyard"], [("service", "Service", "label_values(switchyard_messages_produced_total, service)")])
b.panel("timeseries", "Messages in", "Consumed per second, by topic and outcome (processed, duplicate, dead_lettered).",
        [t(f'sum by (service, topic, outcome) (rate(switchyard_messages_consumed_total{{{S}}}[{R}]))', "{{service}} {{topic}} {{outcome}}")], unit="reqps")
b.panel("timeseries", "Messages out", "Published per second, by topic.",
        [t(f'sum by (service, topic) (rate(switchyard_messages_produced_total{{{S}}}[{R}]))', "{{service}} {{topic}}")], unit="reqps")
b.panel("timeseries", "Handler duration p50 / p99", "Time to handle one consumed message.",
        [t(f'histogram_quantile({q}, sum by (le, service) (rate(switchyard_handler_duration_seconds_bucket{{{S}}}[{R}])))', f"{{{{service}}}} p{int(q*100)}") for q in (0.5, 0.99)], unit="s")
b.panel("timeseries", "Retries", "Messages tried again in place after a transient failure, per second (0 when none).",
        [t(f'sum by (service, topic, reason) (rate(switchyard_handler_retries_total{{{S}}}[{R}])) or sum by (service) (rate(switchyard_messages_consumed_total{{{S}}}[{R}])) * 0', "{{service}} {{topic}} {{reason}}")], unit="reqps")
b.panel("timeseries", "In flight and parked", "Messages in hand, and those waiting their turn at a rate-limited partner.",
        [t(f'sum by (service) (switchyard_consumer_in_flight{{{S}}})', "{{service}} in flight"),
         t(f'sum by (service) (switchyard_consumer_parked{{{S}}})', "{{service}} parked")])
b.panel("timeseries", "Consumer lag", "Messages not yet done, and the oldest one's age, by topic.",
        [t(f'sum by (service, topic) (switchyard_consumer_lag_messages{{{S}}})', "{{service}} {{topic}} messages"),
         t(f'max by (service, topic) (switchyard_consumer_lag_seconds{{{S}}})', "{{service}} {{topic}} seconds")])
b.panel("timeseries", "Database pool", "Connections in use and idle, and the pool's maximum.",
        [t(f'sum by (service, state) (switchyard_db_pool_connections{{{S}}})', "{{service}} {{state}}"),
         t(f'max by (service) (switchyard_db_pool_max_connections{{{S}}})', "{{service}} max")])
b.panel("timeseries", "Resident memory", "Per instance.",
        [t(f'switchyard_process_resident_memory_bytes{{{S}}}', "{{service}} {{instance}}")], unit="bytes")
b.panel("timeseries", "Outbox", "Rows waiting, and the p99 from commit to Kafka acknowledgement.",
        [t(f'sum by (service) (switchyard_outbox_pending_rows{{{S}}})', "{{service}} pending"),
         t(f'histogram_quantile(0.99, sum by (le, service) (rate(switchyard_outbox_publish_lag_seconds_bucket{{{S}}}[{R}])))', "{{service}} publish p99 (s)")])
b.panel("timeseries", "Up", "1 while Prometheus can scrape the instance.",
        [t('up{job=~"switchyard.*"}', "{{instance}}")])
service = b

for name, board in [("mesh-overview", mesh), ("partner-scorecard", partners), ("service", service)]:
    with open(f"{OUT}/{name}.json", "w") as f:
        json.dump(board.json(), f, indent=2, ensure_ascii=False)
        f.write("\n")
print("ok")
