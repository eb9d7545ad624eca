/**
 * Ticket keys: the master secret file is made once (0600) and then only read, even when
 * processes race for it; keys are a deterministic function of master and period.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as TicketKeys from "../../src/tls/TicketKeys.ts"

const tempDirectory = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-tickets-"))),
  (directory) => Effect.promise(() => Fs.rm(directory, { recursive: true, force: true }))
)

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")

describe("TicketKeys.keyFor", () => {
  const master = new Uint8Array(32).fill(7)

  it("is 48 bytes, the same for the same master and period", () => {
    const a = TicketKeys.keyFor(master, 123)
    const b = TicketKeys.keyFor(new Uint8Array(32).fill(7), 123)
    assert.strictEqual(a.length, 48)
    assert.strictEqual(hex(a), hex(b))
  })

  it("differs between periods and between masters", () => {
    const keys = new Set([
      hex(TicketKeys.keyFor(master, 0)),
      hex(TicketKeys.keyFor(master, 1)),
      hex(TicketKeys.keyFor(master, 2 ** 40)),
      hex(TicketKeys.keyFor(new Uint8Array(32).fill(8), 1))
    ])
    assert.strictEqual(keys.size, 4)
  })

  it("is pinned: workers of different releases running side by side must derive the same key", () => {
    assert.strictEqual(
      hex(TicketKeys.keyFor(master, 5)),
      "597da0ad2740408f37dfa3425f471e9da96c9b3830aff2669da88fb8e74cd4791b7d493a62a0fcf57e47471c0fb14110"
    )
  })

  it("periodIndex counts whole rotation periods", () => {
    assert.strictEqual(TicketKeys.periodIndex(0, 3_600_000), 0)
    assert.strictEqual(TicketKeys.periodIndex(3_599_999, 3_600_000), 0)
    assert.strictEqual(TicketKeys.periodIndex(3_600_000, 3_600_000), 1)
  })
})

describe("TicketKeys.loadOrCreate", () => {
  it.live("creates a 32-byte master with mode 0600 (and its directory), then reads the same one", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const file = Path.join(directory, "state", "tls", "ticket-master")
      const first = yield* TicketKeys.loadOrCreate(file)
      assert.strictEqual(first.length, 32)
      const stat = yield* Effect.promise(() => Fs.stat(file))
      assert.strictEqual(stat.mode & 0o777, 0o600)
      const second = yield* TicketKeys.loadOrCreate(file)
      assert.strictEqual(hex(second), hex(first))
      const left = yield* Effect.promise(() => Fs.readdir(Path.dirname(file)))
      assert.deepStrictEqual(left, ["ticket-master"])
    }))

  it.live("concurrent creators in one process all get the same master", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const file = Path.join(directory, "ticket-master")
      const masters = yield* Effect.all(Array.from({ length: 8 }, () => TicketKeys.loadOrCreate(file)), {
        concurrency: "unbounded"
      })
      assert.strictEqual(new Set(masters.map(hex)).size, 1)
    }))

  it.live("processes racing to create it end up with the same master", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const file = Path.join(directory, "ticket-master")
      const module = Path.resolve("src/tls/TicketKeys.ts")
      const script = `
        import { Effect } from "effect"
        import * as TicketKeys from ${JSON.stringify(module)}
        const master = await Effect.runPromise(TicketKeys.loadOrCreate(${JSON.stringify(file)}))
        process.stdout.write(Buffer.from(master).toString("hex"))
      `
      const run = () =>
        new Promise<string>((resolve, reject) => {
          ChildProcess.execFile(process.execPath, ["--input-type=module", "-e", script], (error, stdout) =>
            error === null ? resolve(stdout) : reject(error))
        })
      const outputs = yield* Effect.promise(() => Promise.all(Array.from({ length: 4 }, run)))
      assert.strictEqual(outputs[0]?.length, 64)
      assert.strictEqual(new Set(outputs).size, 1)
      const onDisk = yield* Effect.promise(() => Fs.readFile(file))
      assert.strictEqual(onDisk.toString("hex"), outputs[0])
    }))

  it.live("a file of the wrong size is an error naming it, and is left alone", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const file = Path.join(directory, "ticket-master")
      yield* Effect.promise(() => Fs.writeFile(file, "short"))
      const error = yield* Effect.flip(TicketKeys.loadOrCreate(file))
      assert.strictEqual(error.file, file)
      assert.include(error.message, file)
      assert.include(error.reason, "holds 5 bytes")
      assert.strictEqual(yield* Effect.promise(() => Fs.readFile(file, "utf8")), "short")
    }))
})
