// The report of scripts/bench.sh (CDC part): reads the tab-separated key=value records the
// script wrote, prints the tables and the ratios (pgferry ÷ peer) and writes them as JSON.
//
//   deno run --allow-read --allow-write bench/cdc_report.ts RECORDS.tsv OUT.json [key=value…]

type Rec = Record<string, string>;

const [recordsPath, jsonPath, ...metaArgs] = Deno.args;
if (!recordsPath || !jsonPath) {
  console.error("usage: cdc_report.ts RECORDS.tsv OUT.json [key=value…]");
  Deno.exit(2);
}

function pairs(fields: string[]): Rec {
  const rec: Rec = {};
  for (const f of fields) {
    const i = f.indexOf("=");
    if (i > 0) rec[f.slice(0, i)] = f.slice(i + 1);
  }
  return rec;
}

const records: Rec[] = (await Deno.readTextFile(recordsPath)).split("\n").filter((l) => l.trim())
  .map((l) => pairs(l.split("\t")));
const meta = pairs(metaArgs);

function num(v: string | undefined): number | null {
  if (v === undefined || v === "") return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

interface Result {
  mode: string;
  /** Backlog round (1 when the script ran one). */
  round: number;
  workload: string;
  consumer: string;
  ok: boolean;
  seconds: number | null;
  exit_seconds: number | null;
  streaming_seconds: number | null;
  receive_seconds: number | null;
  rows: number | null;
  txns: number | null;
  rows_per_s: number | null;
  txns_per_s: number | null;
  lag_s: number | null;
  load_seconds: number | null;
  peak_rss_mib: number | null;
  verified: string;
  applied_txns: number | null;
  error: string;
}

const results: Result[] = records.map((r) => {
  const seconds = num(r.seconds);
  const rows = num(r.rows);
  const txns = num(r.txns);
  const ok = r.ok === "1";
  const rss = num(r.peak_rss_kib);
  return {
    mode: r.mode ?? "",
    round: num(r.round) ?? 1,
    workload: r.workload ?? "",
    consumer: r.consumer ?? "",
    ok,
    seconds,
    exit_seconds: num(r.exit_seconds),
    streaming_seconds: num(r.streaming_seconds),
    receive_seconds: num(r.receive_seconds),
    rows,
    txns,
    rows_per_s: ok && seconds && rows !== null ? Math.round(rows / seconds) : null,
    txns_per_s: ok && seconds && txns !== null ? Math.round(txns / seconds) : null,
    lag_s: num(r.lag),
    load_seconds: num(r.load_seconds),
    peak_rss_mib: rss === null ? null : Math.round(rss / 102.4) / 10,
    verified: r.verified ?? "",
    applied_txns: num(r.applied_txns),
    error: r.error ?? "",
  };
});

const fmtInt = (n: number | null) => n === null ? "—" : Math.round(n).toLocaleString("en-US");
const fmtS = (n: number | null, d = 2) => n === null ? "—" : n.toFixed(d);
const fmtX = (n: number | null) => n === null ? "—" : `${n.toFixed(2)}×`;

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) =>
      i < 2 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)
    ).join("  ").trimEnd();
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

const footnotes: string[] = [];
function note(r: Result): string {
  if (r.ok) return r.verified === "ok" ? "ok, target = source" : "ok";
  const applied = r.applied_txns !== null && r.txns !== null
    ? `applied ${r.applied_txns}/${r.txns} txns; `
    : "";
  footnotes.push(
    `[${footnotes.length + 1}] ${r.mode} ${r.workload} ${r.consumer}: ${applied}${r.error}`,
  );
  return `FAILED [${footnotes.length}]`;
}
function flushNotes() {
  if (footnotes.length) out.push(footnotes.join("\n"));
  footnotes.length = 0;
}

const workloads = [...new Set(results.map((r) => r.workload))];
const out: string[] = [];
out.push(
  `CDC benchmark ${meta.date ?? ""} on ${meta.cpus ?? "?"} cores (load avg ${
    meta.loadavg_before ?? "?"
  } → ${meta.loadavg_after ?? "?"}); pgferry ${meta.pgferry ?? ""} (${meta.pgferry_plugin ?? ""})`,
);
out.push(
  `pgbench scale ${meta.scale} × ${meta.pgbench_txns} tpcb-like txns (4 row changes each), bulk ${meta.bulk_txns} × ${meta.bulk_rows} rows, tiny ${meta.tiny_txns} single-row txns`,
);

/**
 * One result per mode, workload and consumer over its rounds: the round of the
 * median (backlog: time; live: lag) of an odd count, the better middle one of
 * an even count, and every round's figure. A round that failed makes the
 * result that failure.
 */
interface Summary extends Result {
  roundFigures: (number | null)[];
}
function summarize(mode: string, figure: (r: Result) => number | null): Summary[] {
  const summaries: Summary[] = [];
  const ofMode = results.filter((r) => r.mode === mode);
  for (const r of ofMode) {
    if (summaries.some((b) => b.workload === r.workload && b.consumer === r.consumer)) continue;
    const rounds = ofMode.filter((x) => x.workload === r.workload && x.consumer === r.consumer);
    const roundFigures = rounds.map((x) => x.ok ? figure(x) : null);
    const failed = rounds.find((x) => !x.ok);
    if (failed !== undefined) {
      summaries.push({ ...failed, roundFigures });
      continue;
    }
    const sorted = [...rounds].sort((a, b) => (figure(a) ?? 0) - (figure(b) ?? 0));
    summaries.push({ ...sorted[Math.floor((sorted.length - 1) / 2)]!, roundFigures });
  }
  return summaries;
}
const roundsOf = (summaries: Summary[]) =>
  Math.max(0, ...summaries.map((b) => b.roundFigures.length));
const backlog = summarize("backlog", (r) => r.seconds);
const rounds = roundsOf(backlog);
if (backlog.length) {
  out.push(
    "\nBacklog (changes accumulated, then consumed up to endpos; time = start → target caught up" +
      (rounds > 1 ? `; median of ${rounds} rounds, taken in turn` : "") + ")",
  );
  out.push(table(
    [
      "workload",
      "consumer",
      "load s",
      "apply s",
      ...(rounds > 1 ? ["rounds s"] : []),
      "rows/s",
      "txn/s",
      "peak RSS",
      "result",
    ],
    backlog.map((r) => [
      r.workload,
      r.consumer,
      fmtS(r.load_seconds, 1),
      fmtS(r.seconds),
      ...(rounds > 1 ? [r.roundFigures.map((x) => fmtS(x)).join(" ")] : []),
      fmtInt(r.rows_per_s),
      fmtInt(r.txns_per_s),
      r.peak_rss_mib === null ? "" : `${r.peak_rss_mib} MiB`,
      note(r),
    ]),
  ));
  flushNotes();
  const mine = backlog.filter((r) => r.consumer === "pgferry" && r.ok);
  if (mine.length) {
    out.push(
      `pgferry phases (s from start${rounds > 1 ? ", median round" : ""}): ` +
        mine.map((r) =>
          `${r.workload}: streaming ${fmtS(r.streaming_seconds)}, received to endpos ${
            fmtS(r.receive_seconds)
          }, applied ${fmtS(r.seconds)}, exited ${fmtS(r.exit_seconds)}`
        ).join("; "),
    );
  }
}
const live = summarize("live", (r) => r.lag_s);
const liveRounds = roundsOf(live);
if (live.length) {
  out.push(
    "\nLive (consumer running during the load; lag = load end → target caught up" +
      (liveRounds > 1 ? `; median of up to ${liveRounds} rounds, one load each` : "") + ")",
  );
  out.push(table(
    [
      "workload",
      "consumer",
      "load s",
      "load rows/s",
      "lag s",
      ...(liveRounds > 1 ? ["rounds lag s"] : []),
      "peak RSS",
      "result",
    ],
    live.map((r) => [
      r.workload,
      r.consumer,
      fmtS(r.load_seconds, 1),
      fmtInt(r.load_seconds && r.rows !== null ? r.rows / r.load_seconds : null),
      fmtS(r.lag_s),
      ...(liveRounds > 1 ? [r.roundFigures.map((x) => fmtS(x)).join(" ")] : []),
      r.peak_rss_mib === null ? "" : `${r.peak_rss_mib} MiB`,
      note(r),
    ]),
  ));
  flushNotes();
}

// ratios: pgferry rows/s ÷ each peer's (backlog); pgferry lag and the peers' (live)
const ratios: Record<string, Record<string, Record<string, number | null>>> = {
  backlog: {},
  live_lag_s: {},
};
const peersOf = (rs: Result[]) =>
  [...new Set(rs.map((r) => r.consumer))].filter((c) => c !== "pgferry");
if (backlog.length) {
  const peers = peersOf(backlog);
  const rows: string[][] = [];
  for (const w of workloads) {
    const mine = backlog.find((r) => r.workload === w && r.consumer === "pgferry");
    const entry: Record<string, number | null> = {};
    for (const p of peers) {
      const peer = backlog.find((r) => r.workload === w && r.consumer === p);
      entry[p] = mine?.rows_per_s && peer?.rows_per_s ? mine.rows_per_s / peer.rows_per_s : null;
    }
    ratios.backlog![w] = entry;
    rows.push([w, "pgferry ÷", ...peers.map((p) => fmtX(entry[p] ?? null))]);
  }
  out.push("\nRatios, backlog rows/s (pgferry ÷ peer; — = a side failed)");
  out.push(table(["workload", "", ...peers], rows));
}
if (live.length) {
  const consumers = [...new Set(live.map((r) => r.consumer))];
  const rows: string[][] = [];
  for (const w of workloads) {
    const entry: Record<string, number | null> = {};
    for (const c of consumers) {
      const r = live.find((x) => x.workload === w && x.consumer === c);
      entry[c] = r?.ok ? r.lag_s : null;
    }
    ratios.live_lag_s![w] = entry;
    rows.push([w, "lag s", ...consumers.map((c) => fmtS(entry[c] ?? null))]);
  }
  out.push("\nLive lag at the end of the load, seconds (— = failed)");
  out.push(table(["workload", "", ...consumers], rows));
}
console.log(out.join("\n"));

await Deno.writeTextFile(
  jsonPath,
  JSON.stringify(
    {
      kind: "pgferry-bench-cdc",
      meta,
      results,
      backlog_medians: backlog,
      live_medians: live,
      ratios,
    },
    null,
    2,
  ) +
    "\n",
);
