/**
 * Metrics of a follow process, in the Prometheus text format (version 0.0.4):
 *
 *   # HELP name text
 *   # TYPE name counter|gauge|histogram
 *   name{label="value",…} number
 *
 * The registry lives with the supervisor on the main thread and is served at
 * `/metrics`. Stage workers run in other threads: each bumps plain numbers in
 * its own `StageCounters` and posts what changed to the supervisor at most
 * once a second (a `MetricsDelta`), which adds it to the registry. Counters
 * therefore survive a worker's restart. metrics_server.ts serves it.
 */

/** The labels of one series: name → value. */
export type Labels = Record<string, string>;

type MetricType = "counter" | "gauge" | "histogram";

/** Every series a follow process exposes: name → type and help. */
export const FOLLOW_METRICS = {
  pgferry_startpos_lsn: ["gauge", "The sentinel's startpos, as a number"],
  pgferry_endpos_lsn: ["gauge", "The sentinel's endpos, as a number (0: none)"],
  pgferry_write_lsn: ["gauge", "The sentinel's write_lsn: received into the spool"],
  pgferry_flush_lsn: ["gauge", "The sentinel's flush_lsn: fsynced in the spool"],
  pgferry_replay_lsn: ["gauge", "The sentinel's replay_lsn: applied to the target"],
  pgferry_source_current_lsn: ["gauge", "The source's current WAL position"],
  pgferry_slot_retained_bytes: ["gauge", "WAL the source's slot holds back"],
  pgferry_receive_lag_bytes: ["gauge", "Bytes from write_lsn to the source's current position"],
  pgferry_apply_lag_bytes: ["gauge", "Bytes from replay_lsn to write_lsn"],
  pgferry_apply_lag_seconds: [
    "gauge",
    "Seconds since the source committed the last transaction applied (0 when nothing waits)",
  ],
  pgferry_apply_last_commit_timestamp_seconds: [
    "gauge",
    "Source commit time of the last transaction applied, in Unix seconds",
  ],
  pgferry_rows_applied_total: [
    "counter",
    "Rows applied to the target, by table and operation (truncate: times the table was emptied)",
  ],
  pgferry_transactions_applied_total: ["counter", "Source transactions applied to the target"],
  pgferry_apply_round_trips_total: ["counter", "Round trips to the target that completed"],
  pgferry_apply_latency_seconds: [
    "histogram",
    "Time from a target transaction's BEGIN to its COMMIT acknowledged",
  ],
  pgferry_receive_bytes_total: ["counter", "Bytes of decoded changes received from the source"],
  pgferry_receive_transactions_total: ["counter", "Source transactions written to the spool"],
  pgferry_spool_bytes: ["gauge", "Bytes in the spool's segment files"],
  pgferry_spool_files: ["gauge", "Segment files in the spool"],
  pgferry_coordinator_requests_total: [
    "counter",
    "Requests served by the sentinel coordinator, by message type and result",
  ],
  pgferry_stage_restarts_total: [
    "counter",
    "Stage workers restarted (after an error, an ended stream or a stall), by stage",
  ],
  pgferry_errors_total: ["counter", "Errors that stopped a stage, by stage and error class"],
  pgferry_apply_stalled: [
    "gauge",
    "1 while replay_lsn has not moved for --stall-timeout with changes waiting",
  ],
} as const satisfies Record<string, readonly [MetricType, string]>;

/** The name of a series a follow process exposes. */
export type MetricName = keyof typeof FOLLOW_METRICS;

/** Upper bounds of the latency histogram's buckets, in seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What a stage worker posts: what changed since its last post. */
export interface MetricsDelta {
  counters: [MetricName, Labels, number][];
  gauges: [MetricName, Labels, number][];
  observations: [MetricName, number[]][];
  /** Whether the stage got on with its work (or found none to do): the watchdog's sign of life. */
  progressed: boolean;
}

/** A counter a stage bumps in place: `tally.value += n` costs no lookup on a hot path. */
export interface Tally {
  value: number;
}

/**
 * A stage's side of the metrics: counters bumped in place, gauges set,
 * observations kept until `drain()` hands them to the supervisor.
 */
export class StageCounters {
  readonly #tallies = new Map<string, { name: MetricName; labels: Labels; tally: Tally }>();
  readonly #gauges = new Map<string, [MetricName, Labels, number]>();
  readonly #observations = new Map<MetricName, number[]>();
  #ticks = 0;

  /** The tally of one counter series (the same object for the same name and labels). */
  counter(name: MetricName, labels: Labels = {}): Tally {
    const key = seriesKey(name, labels);
    let entry = this.#tallies.get(key);
    if (entry === undefined) {
      entry = { name, labels, tally: { value: 0 } };
      this.#tallies.set(key, entry);
    }
    return entry.tally;
  }

  set(name: MetricName, value: number, labels: Labels = {}): void {
    this.#gauges.set(seriesKey(name, labels), [name, labels, value]);
  }

  observe(name: MetricName, value: number): void {
    const values = this.#observations.get(name);
    if (values === undefined) this.#observations.set(name, [value]);
    else values.push(value);
  }

  /** The stage got on with its work, or found none to do. */
  alive(): void {
    this.#ticks++;
  }

  /** What changed since the last drain, or undefined when nothing did. */
  drain(): MetricsDelta | undefined {
    const counters: [MetricName, Labels, number][] = [];
    for (const { name, labels, tally } of this.#tallies.values()) {
      if (tally.value === 0) continue;
      counters.push([name, labels, tally.value]);
      tally.value = 0;
    }
    const gauges = [...this.#gauges.values()];
    const observations = [...this.#observations];
    const progressed = this.#ticks > 0;
    this.#gauges.clear();
    this.#observations.clear();
    this.#ticks = 0;
    if (!counters.length && !gauges.length && !observations.length && !progressed) {
      return undefined;
    }
    return { counters, gauges, observations, progressed };
  }
}

interface Histogram {
  buckets: number[];
  sum: number;
  count: number;
}

interface Family {
  type: MetricType;
  help: string;
  series: Map<string, { labels: Labels; value: number; histogram?: Histogram }>;
}

/** The supervisor's registry of every follow series. */
export class MetricsRegistry {
  readonly #families = new Map<MetricName, Family>();

  constructor() {
    for (const [name, [type, help]] of Object.entries(FOLLOW_METRICS)) {
      this.#families.set(name as MetricName, { type, help, series: new Map() });
    }
  }

  inc(name: MetricName, labels: Labels = {}, by = 1): void {
    const series = this.#series(name, "counter", labels);
    series.value += by;
  }

  set(name: MetricName, value: number, labels: Labels = {}): void {
    this.#series(name, "gauge", labels).value = value;
  }

  /** The value of a gauge or counter series, if it has one. */
  get(name: MetricName, labels: Labels = {}): number | undefined {
    return this.#family(name).series.get(seriesKey(name, labels))?.value;
  }

  /** Drops every series of a gauge (one that is not known right now is left out, not stale). */
  clear(name: MetricName): void {
    this.#family(name).series.clear();
  }

  observe(name: MetricName, value: number, labels: Labels = {}): void {
    const series = this.#series(name, "histogram", labels);
    const histogram = series.histogram ??= {
      buckets: LATENCY_BUCKETS.map(() => 0),
      sum: 0,
      count: 0,
    };
    const i = LATENCY_BUCKETS.findIndex((bound) => value <= bound);
    if (i >= 0) histogram.buckets[i]!++;
    histogram.sum += value;
    histogram.count++;
  }

  /** Adds what a stage worker posted. */
  add(delta: MetricsDelta): void {
    for (const [name, labels, by] of delta.counters) this.inc(name, labels, by);
    for (const [name, labels, value] of delta.gauges) this.set(name, value, labels);
    for (const [name, values] of delta.observations) {
      for (const value of values) this.observe(name, value);
    }
  }

  /** The text exposition of every family, series with no samples left out. */
  render(): string {
    const lines: string[] = [];
    for (const [name, family] of this.#families) {
      lines.push(`# HELP ${name} ${escapeHelp(family.help)}`);
      lines.push(`# TYPE ${name} ${family.type}`);
      for (const { labels, value, histogram } of family.series.values()) {
        if (histogram === undefined) {
          lines.push(`${name}${labelText(labels)} ${numberText(value)}`);
          continue;
        }
        let cumulative = 0;
        LATENCY_BUCKETS.forEach((bound, i) => {
          cumulative += histogram.buckets[i]!;
          lines.push(`${name}_bucket${labelText({ ...labels, le: String(bound) })} ${cumulative}`);
        });
        lines.push(`${name}_bucket${labelText({ ...labels, le: "+Inf" })} ${histogram.count}`);
        lines.push(`${name}_sum${labelText(labels)} ${numberText(histogram.sum)}`);
        lines.push(`${name}_count${labelText(labels)} ${histogram.count}`);
      }
    }
    return lines.join("\n") + "\n";
  }

  #family(name: MetricName): Family {
    const family = this.#families.get(name);
    if (family === undefined) throw new TypeError(`Unknown metric "${name}"`);
    return family;
  }

  #series(name: MetricName, type: MetricType, labels: Labels) {
    const family = this.#family(name);
    if (family.type !== type) {
      throw new TypeError(`Metric "${name}" is a ${family.type}, not a ${type}`);
    }
    const key = seriesKey(name, labels);
    let series = family.series.get(key);
    if (series === undefined) {
      series = { labels, value: 0 };
      family.series.set(key, series);
    }
    return series;
  }
}

function seriesKey(name: string, labels: Labels): string {
  return `${name}${labelText(labels)}`;
}

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  const escape = (v: string) =>
    v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
  return `{${entries.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`;
}

function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function numberText(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
