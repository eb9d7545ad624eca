/**
 * `postern replay`: list sessions, print one session's transcript, follow live sessions, or
 * verify that every recorded session replays to the same replies.
 */
import { Console, Effect, Stream } from "effect"
import type * as Event from "./Event.ts"
import * as LogReader from "./LogReader.ts"
import * as Replay from "./Replay.ts"

export interface ReplayOptions {
  readonly directory: string
  readonly session: string | undefined
  readonly follow: boolean
  readonly json: boolean
  readonly verify: boolean
}

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
