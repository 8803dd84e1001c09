// The metric cards and the per-status pipeline panel, redrawn from each "metrics" frame.

import { $, $$ } from "./dom.js";
import { count, ms, percent, rate } from "./format.js";
import { sparkline } from "./charts.js";

const HISTORY = 90; // points kept for sparklines that the server does not backfill
const RECENT_S = 5;
const STATUSES = ["scheduled", "queued", "processing", "retrying", "completed", "failed"];

function recentRate(values) {
  const recent = values.slice(-RECENT_S - 1, -1); // the current second is still filling
  return recent.reduce((a, b) => a + b, 0) / Math.max(1, recent.length);
}

export function mountKpis() {
  const card = (name) => $(`[data-kpi=${name}]`);
  const set = (name, value, sub) => {
    $(".value", card(name)).textContent = value;
    if (sub !== undefined) $(".sub", card(name)).textContent = sub;
  };
  const sparks = {
    total: sparkline($(".spark", card("total")), "#22d3ee"),
    completed: sparkline($(".spark", card("completed")), "#34d399"),
    failed: sparkline($(".spark", card("failed")), "#fb7185"),
    queue: sparkline($(".spark", card("queue")), "#a78bfa"),
    latency: sparkline($(".spark", card("latency")), "#fbbf24"),
  };
  let queueHistory = [];
  let latencyHistory = [];
  const ring = $(".ring-value", card("success"));

  function pipeline(counts, total) {
    for (const row of $$("#pipeline [data-status]")) {
      const n = counts[row.dataset.status] || 0;
      $(".count", row).textContent = count(n);
      $(".bar i", row).style.width = `${total ? Math.max(n ? 1.5 : 0, (n / total) * 100) : 0}%`;
    }
  }

  return {
    update(m, columns) {
      const [, ingested, completed, failed] = columns;
      const c = m.counts;
      set("total", count(m.total), `${rate(recentRate(ingested))}/s ingested now`);
      set("completed", count(c.completed), `${rate(recentRate(completed))}/s now`);
      set("failed", count(c.failed), c.retrying ? `${count(c.retrying)} retrying` : "none retrying");
      const later = c.scheduled ? ` · ${count(c.scheduled)}\u00a0later` : "";
      set("queue", count(m.queue_depth), `${count(c.queued)}\u00a0queued · ${count(c.processing)}\u00a0running${later}`);
      set("success", percent(m.success_rate), `${count(c.completed + c.failed)} finished`);
      set("latency", ms(m.latency_ms.p50), `p95 ${ms(m.latency_ms.p95)} · p99 ${ms(m.latency_ms.p99)}`);
      ring.style.strokeDashoffset = String(100 - (m.success_rate ?? 0) * 100);
      card("success").dataset.tone = m.success_rate === null ? "idle" : m.success_rate >= 0.95 ? "good" : m.success_rate >= 0.8 ? "warn" : "bad";
      queueHistory = [...queueHistory, m.queue_depth].slice(-HISTORY);
      latencyHistory = [...latencyHistory, m.latency_ms.p95 ?? 0].slice(-HISTORY);
      sparks.total(ingested.slice(-HISTORY));
      sparks.completed(completed.slice(-HISTORY));
      sparks.failed(failed.slice(-HISTORY));
      sparks.queue(queueHistory);
      sparks.latency(latencyHistory);
      pipeline(c, m.total);
    },
    reset() {
      queueHistory = [];
      latencyHistory = [];
    },
  };
}

export { STATUSES };
