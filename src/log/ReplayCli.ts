/**
 * `postern replay`: list sessions, print one session's transcript, follow live sessions,
 * verify that every recorded session replays to the same replies, or re-evaluate the recorded
 * policy decisions under another configuration's rules (`--rules`, with the bodies of messages
 * the spool still holds).
 */
import * as Path from "node:path"
import { Console, Effect, Stream } from "effect"
import * as Config from "../config/Config.ts"
import * as Duration from "../config/Duration.ts"
import * as Policy from "../policy/Policy.ts"
import * as Spool from "../queue/Spool.ts"
import type * as Event from "./Event.ts"
import * as LogReader from "./LogReader.ts"
import * as Replay from "./Replay.ts"

export interface ReplayOptions {
  readonly directory: string
  readonly session: string | undefined
  readonly follow: boolean
  readonly json: boolean
  readonly verify: boolean
  /** A configuration file whose rules re-evaluate the recorded decisions. */
  readonly rules?: string | undefined
  /** With `rules` or `shadowReport`: an ISO 8601 time, or a duration back from now. */
  readonly since?: string | undefined
  /** Compare the recorded shadow decisions with the live ones. */
  readonly shadowReport?: boolean | undefined
  /**
   * With `rules`: the spool root, whence rules that look at the body get it for the messages it
   * still holds. Default: `spool` beside the log directory (`var/log`, `var/spool`).
   */
  readonly spool?: string | undefined
}

/** The spool `--spool` names, or the one the default layout puts beside the log directory. */
const spoolDirectory = (options: Pick<ReplayOptions, "directory" | "spool">): string =>
  options.spool ?? Path.join(Path.dirname(Path.resolve(options.directory)), "spool")

/**
 * Reads queued messages' content from the spool: each from the partition whose log recorded
 * it, which is the partition of the queue that spooled it.
 */
const spoolContent = (directory: string, entries: ReadonlyArray<LogReader.PartitionEntry>): Replay.StoredContent => {
  const partitions = new Map<string, string>()
  for (const entry of entries) if (entry.event._tag === "MessageQueued") partitions.set(entry.event.queueId, entry.partition)
  return (message, limit) => {
    const partition = partitions.get(message.queueId)
    return partition === undefined ? Effect.succeed(undefined) : Spool.readStart(directory, partition, message.spool, limit)
  }
}

/** The epoch milliseconds `--since` names, or undefined when it is neither a time nor a duration. */
const parseSince = (text: string, now: number): number | undefined => {
  // A bare number could be either: ask for a unit or a date.
  if (/^\s*\d+(\.\d+)?\s*$/.test(text)) return undefined
  const ago = Duration.toMillis(text)
  if (ago !== undefined && !/^\d{4}-/.test(text)) return now - ago
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : at
}

const words = (d: Replay.DecisionSummary): string =>
  `${d.verdict} by ${d.rule === undefined ? "the default" : `rule '${d.rule}'`}` +
  (d.code === undefined ? "" : ` (${d.code}${d.enhanced === undefined ? "" : ` ${d.enhanced}`})`)

/** The sessions `--session` and `--since` select; undefined (after saying why) for a bad `--since`. */
const selected = (options: ReplayOptions, sessions: ReadonlyArray<Replay.RecordedSession>) =>
  Effect.gen(function*() {
    const since = options.since === undefined ? undefined : parseSince(options.since, Date.now())
    if (options.since !== undefined && since === undefined) {
      yield* Console.error(`--since: expected an ISO 8601 time or a duration such as "24h", got ${JSON.stringify(options.since)}`)
      return undefined
    }
    return sessions.filter((s) =>
      (options.session === undefined || s.id === options.session) &&
      (since === undefined || (s.opened !== undefined && s.opened.at >= since))
    )
  })

/** `--shadow-report`: where the shadow rules decided otherwise, by stage and verdict, and a count. */
const reportShadow = (options: ReplayOptions, sessions: ReadonlyArray<Replay.RecordedSession>) =>
  Effect.gen(function*() {
    const chosen = yield* selected(options, sessions)
    if (chosen === undefined) return 2
    let compared = 0
    let differing = 0
    const affected = new Set<string>()
    const byKind = new Map<string, number>()
    for (const session of chosen) {
      const report = Replay.shadowReport(session)
      compared += report.compared
      for (const difference of report.differences) {
        differing++
        affected.add(difference.session)
        const kind = `${difference.stage}: ${difference.live.verdict} -> ${difference.shadow.verdict}`
        byKind.set(kind, (byKind.get(kind) ?? 0) + 1)
        yield* line(
          options.json,
          difference,
          `${new Date(difference.at).toISOString()}  ${difference.session}  ${difference.stage}: live ${words(difference.live)}, shadow ${words(difference.shadow)}`
        )
      }
    }
    const kinds = Object.fromEntries([...byKind].sort((a, b) => b[1] - a[1]))
    const summary = { sessions: chosen.length, compared, differing, differingSessions: affected.size, byKind: kinds }
    yield* line(
      options.json,
      summary,
      `compared ${compared} decisions in ${chosen.length} sessions: ` +
        (differing === 0
          ? "the shadow rules agree with the live ones"
          : `${differing} differ, in ${affected.size} sessions (${[...byKind].map(([k, n]) => `${k} ${n}`).join("; ")})`)
    )
    return 0
  })

/** `--rules`: every recorded decision the other rules make differently, and a count. */
const reevaluateAll = (
  options: ReplayOptions,
  file: string,
  sessions: ReadonlyArray<Replay.RecordedSession>,
  events: ReadonlyArray<Event.Event>,
  stored: Replay.StoredContent
) =>
  Effect.gen(function*() {
    const loaded = yield* Effect.result(Config.load(file))
    if (loaded._tag === "Failure") {
      yield* Console.error(loaded.failure.message)
      return 2
    }
    const policy = Policy.make(Config.ruleSet(loaded.success.policy))
    const chosen = yield* selected(options, sessions)
    if (chosen === undefined) return 2
    const settings = Replay.settingsByDigest(events)
    let decisions = 0
    let changed = 0
    const changedSessions = new Set<string>()
    for (const session of chosen) {
      const result = yield* Replay.reevaluate(
        session,
        session.opened === undefined ? undefined : settings.get(session.opened.settingsDigest),
        policy,
        stored
      )
      decisions += result.decisions
      if (result.skipped !== undefined) {
        yield* line(options.json, result, `${session.id}: not re-evaluated: ${result.skipped}`)
      }
      for (const change of result.changed) {
        changed++
        changedSessions.add(change.session)
        yield* line(
          options.json,
          change,
          `${new Date(change.at).toISOString()}  ${change.session}  ${change.stage}: was ${words(change.recorded)}, now ${words(change.now)}`
        )
      }
    }
    const summary = { sessions: chosen.length, decisions, changed, changedSessions: changedSessions.size }
    yield* line(
      options.json,
      summary,
      `re-evaluated ${decisions} decisions in ${chosen.length} sessions under ${file}: ` +
        (changed === 0 ? "none would change" : `${changed} would change, in ${changedSessions.size} sessions`)
    )
    return 0
  })

const line = (json: boolean, value: unknown, text: string) => Console.log(json ? JSON.stringify(value) : text)

const describe = (s: Replay.SessionSummary): string =>
  `${new Date(s.at).toISOString()}  ${s.id.padEnd(24)} ${s.peer.padEnd(22)} ${s.role.padEnd(11)} ${s.outcome}` +
  (s.queued.length === 0 ? "" : `  queued: ${s.queued.join(" ")}`)

/** Exit code 1 when verification finds a difference or a session could not be checked. */
export const run = Effect.fnUntraced(function*(options: ReplayOptions) {
  const read = yield* LogReader.readAll(options.directory)
  for (const problem of read.problems) {
    yield* Console.error(`log: ${problem.file} at ${problem.offset}: ${problem.reason}`)
  }
  const events: ReadonlyArray<Event.Event> = read.entries.map((e) => e.event)
  const sessions = Replay.sessions(events)

  if (options.rules !== undefined) {
    const stored = spoolContent(spoolDirectory(options), read.entries)
    return yield* reevaluateAll(options, options.rules, sessions, events, stored)
  }
  if (options.shadowReport === true) return yield* reportShadow(options, sessions)

  if (options.verify) {
    const settings = Replay.settingsByDigest(events)
    let replies = 0
    let failed = 0
    for (const session of sessions) {
      const result = Replay.verify(session, session.opened === undefined ? undefined : settings.get(session.opened.settingsDigest))
      replies += result.replies
      if (result.skipped !== undefined || result.mismatches.length > 0) failed++
      if (result.skipped !== undefined) yield* line(options.json, result, `${session.id}: not replayed: ${result.skipped}`)
      for (const m of result.mismatches) {
        yield* line(options.json, m, `${m.session} reply #${m.index}: recorded ${JSON.stringify(m.recorded)} replayed ${JSON.stringify(m.replayed)}`)
      }
    }
    const summary = { sessions: sessions.length, replies, failedSessions: failed }
    yield* line(options.json, summary, `verified ${sessions.length} sessions, ${replies} replies: ${failed === 0 ? "all identical" : `${failed} sessions differ`}`)
    return failed === 0 ? 0 : 1
  }

  if (options.session !== undefined) {
    const session = sessions.find((s) => s.id === options.session)
    if (session === undefined) {
      yield* Console.error(`no session ${options.session} in ${options.directory}`)
      return 1
    }
    if (options.json) for (const event of session.events) yield* Console.log(JSON.stringify(event))
    else for (const text of Replay.transcript(session)) yield* Console.log(text)
    return 0
  }

  for (const session of sessions) {
    const summary = Replay.summarize(session)
    yield* line(options.json, summary, describe(summary))
  }
  if (options.follow) {
    yield* Console.error(`following ${options.directory} (new events as they are written; Ctrl-C stops)`)
    yield* LogReader.follow(options.directory, true).pipe(
      Stream.runForEach((event) =>
        options.json
          ? Console.log(JSON.stringify(event))
          : Effect.forEach(Replay.transcript({ id: "", opened: undefined, events: [event] }), (t) =>
            Console.log(`${"session" in event ? event.session : "-"} ${t}`))
      )
    )
  }
  return 0
})
