/**
 * `postern replay --verify` must fail loudly when a recorded reply is not what the machine
 * gives for the recorded inputs (a changed binary, a hand-edited or foreign log): exit 1 and
 * the session and reply named. The log is written here with the real writer.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Event from "../../src/log/Event.ts"
import { EventLog } from "../../src/log/EventLog.ts"
import * as LogWriter from "../../src/log/LogWriter.ts"
import { settings } from "../support/Settings.ts"
import { runPostern } from "../support/Daemon.ts"

const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-verify-"))

const writeLog = (directory: string, events: ReadonlyArray<Event.Event>) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const log = yield* EventLog
      for (const event of events) yield* log.appendDurable(event)
    }).pipe(
      Effect.provide(LogWriter.layer({ directory, partition: "w0", rotateBytes: 1 << 20, fsync: "always", fsyncIntervalMs: 10 }))
    )
  )

const session = (id: string, heloReply: string): ReadonlyArray<Event.Event> => {
  const at = Date.UTC(2026, 10, 22, 4, 0, 0)
  return [
    Event.make("SessionOpened", {
      session: id,
      at,
      settingsDigest: "fixture",
      role: "smtp",
      peer: { address: "192.0.2.9", port: 40000 },
      local: { address: "127.0.0.1", port: 25 },
      admission: "ok"
    }),
    Event.make("ReplySent", { session: id, at, code: 220, lines: ["mx.example.test ESMTP Postern"] }),
    Event.make("CommandReceived", { session: id, at: at + 1, line: "HELO client.test" }),
    Event.make("ReplySent", { session: id, at: at + 1, code: 250, lines: [heloReply] }),
    Event.make("CommandReceived", { session: id, at: at + 2, line: "QUIT" }),
    Event.make("ReplySent", { session: id, at: at + 2, code: 221, enhanced: "2.0.0", lines: ["Bye"] }),
    Event.make("SessionClosed", { session: id, at: at + 2, reason: "quit" })
  ]
}

describe("replay --verify", () => {
  afterAll(() => Fs.rmSync(root, { recursive: true, force: true }))

  it("exits 0 when every recorded reply is reproduced", async () => {
    const directory = Path.join(root, "faithful")
    await writeLog(directory, [
      Event.make("SettingsRecorded", { at: 0, digest: "fixture", settings }),
      ...session("w0-faithful", "mx.example.test")
    ])
    const result = await runPostern(["replay", directory, "--verify"])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.include(result.stdout, "verified 1 sessions, 3 replies: all identical")
  })

  it("exits 1 and names the session and the reply when a recorded reply differs", async () => {
    const directory = Path.join(root, "altered")
    await writeLog(directory, [
      Event.make("SettingsRecorded", { at: 0, digest: "fixture", settings }),
      ...session("w0-faithful", "mx.example.test"),
      ...session("w0-altered", "mx.elsewhere.test")
    ])
    const result = await runPostern(["replay", directory, "--verify"])
    assert.strictEqual(result.code, 1, result.stdout + result.stderr)
    assert.include(result.stdout, "w0-altered reply #1")
    assert.include(result.stdout, "mx.elsewhere.test")
    assert.notInclude(result.stdout, "w0-faithful reply")
    assert.include(result.stdout, "1 sessions differ")
  })

  it("exits 1 when a session's settings snapshot is missing, rather than passing it unchecked", async () => {
    const directory = Path.join(root, "orphan")
    await writeLog(directory, session("w0-orphan", "mx.example.test"))
    const result = await runPostern(["replay", directory, "--verify"])
    assert.strictEqual(result.code, 1, result.stdout + result.stderr)
    assert.include(result.stdout, "w0-orphan: not replayed: settings snapshot not found")
  })
})
