/** Temporary log directories and small waiting helpers for the log tests. */
import { Effect, type Scope } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import type * as LogWriter from "../../src/log/LogWriter.ts"

/** A fresh directory under the system temp directory, removed when the test's scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-log-"))),
  (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
)

/** Writer options for tests: a large rotation size and no fsync unless asked for. */
export const options = (directory: string, overrides: Partial<LogWriter.Options> = {}): LogWriter.Options => ({
  directory,
  partition: "w0",
  rotateBytes: 1 << 20,
  fsync: "never",
  fsyncIntervalMs: 50,
  retryDelayMs: 20,
  ...overrides
})

/** Polls `check` every 10 ms until it holds; fails after `timeoutMs`. */
export const eventually = (what: string, check: Effect.Effect<boolean>, timeoutMs = 5000): Effect.Effect<void> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(10)
    }
  })

/** The log files of a partition directory, by name. */
export const fileNames = (dir: string): Effect.Effect<Array<string>> =>
  Effect.promise(async () => (await Fs.readdir(dir)).filter((name) => name.endsWith(".plog")).sort())

/** The size of a file on disk. */
export const fileSize = (path: string): Effect.Effect<number> => Effect.promise(async () => (await Fs.stat(path)).size)
