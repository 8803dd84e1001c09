// EventFlow Prime: wires sign-in, the live stream, cards, chart, feed, drawer, injector and keys.

import { createApi } from "./api.js";
import { mountSignIn, revokeSession, session } from "./auth.js";
import { throughputChart } from "./charts.js";
import { $, $$, show } from "./dom.js";
import { mountDrawer } from "./drawer.js";
import { mountFeed } from "./feed.js";
import { count, rate } from "./format.js";
import { mountInjector } from "./injector.js";
import { mountKeys } from "./keys.js";
import { mountKpis } from "./kpis.js";
import { startParticles } from "./particles.js";
import { connectStream } from "./stream.js";
import { toast } from "./toast.js";

const CONNECTION_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };

let current = null;
let stream = null;
let ui = null;

const api = createApi({
  token: () => current?.token,
  onUnauthorized: (detail) => endSession(`You were signed out: ${detail}`, "warn"),
});
const signIn = mountSignIn({ api, onSignedIn: begin });

function mountDashboard() {
  const feed = mountFeed({ api, onOpen: (id) => drawer.open(id) });
  const keys = mountKeys({ api });
  const drawer = mountDrawer({
    api,
    keyPrefix: (id) => keys.prefixOf(id),
    onRetried: (ids) => feed.markQueued(ids),
    onTemplate: (event) => injector.load(event),
  });
  const injector = mountInjector({ api, onSent: (id) => drawer.open(id) });
  const kpis = mountKpis();
  const chart = throughputChart($("#throughput-chart"), ({ seconds, ingested, completed, failed, peak }) => {
    // No-break spaces keep each number with its word when the line wraps on a phone.
    $("#chart-summary").textContent = `${count(ingested)}\u00a0ingested · ${count(completed)}\u00a0completed · ${count(failed)}\u00a0failed · peak\u00a0${rate(peak)}/s`;
    $("#chart-empty").textContent = `No traffic in the last ${seconds / 60} min: send a burst with the injector.`;
    $("#chart-empty").hidden = ingested + completed + failed > 0;
  });
  for (const button of $$("[data-window]")) {
    button.addEventListener("click", () => {
      for (const other of $$("[data-window]")) other.setAttribute("aria-pressed", String(other === button));
      chart.setWindow(Number(button.dataset.window));
    });
  }
  let failedCount = 0;

  $("#retry-all").addEventListener("click", () => {
    if (!failedCount) return toast("Nothing to retry", { tone: "info", detail: "No event is in the failed state" });
    $("#confirm-text").textContent = `Queue all ${count(failedCount)} failed events again? Each gets a fresh attempt budget.`;
    $("#confirm").showModal();
  });
  $("#confirm").addEventListener("close", async () => {
    if ($("#confirm").returnValue !== "yes") return;
    try {
      const { replayed, ids } = await api.post("/api/v1/events/retry-failed");
      feed.markQueued(ids);
      toast(`${count(replayed)} failed events queued again`);
    } catch (error) {
      if (error.status !== 401) toast("Retry all failed", { tone: "error", detail: error.message });
    }
  });

  return {
    hello() {
      feed.reload().catch((error) => error.status !== 401 && toast("Could not load events", { tone: "error", detail: error.message }));
      keys.reload();
    },
    metrics(m) {
      kpis.update(m, chart.update(m.series, m.t));
      feed.setCounts(m.counts);
      feed.tick();
      keys.tick();
      failedCount = m.counts.failed;
      $("#retry-all").disabled = !failedCount;
    },
    feed({ events }) {
      feed.apply(events);
      keys.noteEvents(events);
      drawer.changed(events.map((e) => e.id));
    },
    reset() {
      drawer.close();
      feed.clear();
      chart.reset();
      kpis.reset();
      keys.reset();
    },
  };
}

function setConnection(state) {
  const indicator = $("#connection");
  indicator.dataset.state = state;
  $("span", indicator).textContent = CONNECTION_TEXT[state];
}

function begin(value) {
  current = value;
  signIn.close();
  show($("#app"));
  $("#who").textContent = value.email;
  ui ??= mountDashboard();
  stream = connectStream({
    api,
    onHello: () => ui.hello(),
    onMetrics: (m) => ui.metrics(m),
    onFeed: (f) => ui.feed(f),
    onState: setConnection,
    onSessionEnd: (message) => endSession(message, "warn"),
  });
}

function endSession(message, tone = "info") {
  if (!current) return;
  stream?.stop();
  stream = null;
  current = null;
  session.clear();
  ui?.reset();
  show($("#app"), false);
  signIn.open(message, tone);
}

$("#sign-out").addEventListener("click", () => {
  revokeSession(api);
  endSession("You signed out.", "info");
});
startParticles($("#particles"));
const saved = session.load();
if (saved) begin(saved);
else signIn.open();
