// The live connection: trade the bearer token for a one-time ticket, open an EventSource, and
// reconnect with backoff (always with a fresh ticket) when it drops or goes quiet.

import { apiUrl } from "./api.js";

const STALE_MS = 6000; // the server writes every second; this long without a frame is a drop
const MAX_BACKOFF_MS = 15_000;

export function connectStream({ api, onHello, onMetrics, onFeed, onState, onSessionEnd }) {
  let source = null;
  let retryTimer = 0;
  let watchdog = 0;
  let failures = 0;
  let stopped = false;

  function alive() {
    clearTimeout(watchdog);
    watchdog = setTimeout(drop, STALE_MS);
  }

  function listen(name, handler) {
    source.addEventListener(name, (message) => {
      alive();
      handler(JSON.parse(message.data));
    });
  }

  async function open() {
    if (stopped) return;
    onState("connecting");
    let ticket;
    try {
      ({ ticket } = await api.post("/api/v1/stream/ticket"));
    } catch (error) {
      if (error.status === 401) return; // the API client already sent us back to sign-in
      return retry();
    }
    if (stopped) return;
    source = new EventSource(apiUrl(`/api/v1/stream?ticket=${encodeURIComponent(ticket)}`));
    listen("hello", (hello) => {
      failures = 0;
      onState("live");
      onHello(hello);
    });
    listen("metrics", onMetrics);
    listen("feed", onFeed);
    listen("bye", ({ reason }) => {
      close();
      if (reason === "session-expired") onSessionEnd("Your session has expired");
      else if (reason === "signed-out") onSessionEnd("You were signed out");
      else retry();
    });
    // EventSource would retry by itself with the same, already spent, ticket: take over.
    source.onerror = drop;
  }

  function close() {
    clearTimeout(watchdog);
    if (source) source.close();
    source = null;
  }

  function drop() {
    close();
    retry();
  }

  function retry() {
    if (stopped) return;
    const delay = Math.min(MAX_BACKOFF_MS, 300 * 2 ** failures++) * (0.8 + Math.random() * 0.4);
    onState("reconnecting");
    clearTimeout(retryTimer);
    retryTimer = setTimeout(open, delay);
  }

  open();
  return {
    stop() {
      stopped = true;
      clearTimeout(retryTimer);
      close();
    },
  };
}
