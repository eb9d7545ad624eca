/**
 * IoThreads.lowerPriority on this test process's own thread pool: it lowers the pool's threads
 * and no other, and never raises a thread that is already lower (which would need privileges
 * and undo an administrator's `nice`). The runner's own nice value is the starting point.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as IoThreads from "../../src/daemon/IoThreads.ts"
import { isPool, nices, threadsOf } from "../support/Threads.ts"

const pool = () => threadsOf("self").filter(isPool)
const others = () => threadsOf("self").filter((t) => !isPool(t))

// A runner already at nice 17 or more leaves no room to lower the pool twice below 19.
describe.runIf(process.platform === "linux" && Os.getPriority() <= 16)("IoThreads.lowerPriority", () => {
  it.effect("lowers the pool's threads only, and never raises one already lower", () =>
    Effect.gen(function*() {
      // The pool starts all its threads on its first job.
      yield* Effect.promise(() => Fs.promises.stat("/proc/self"))
      const start = Math.max(...pool().map((t) => t.nice))
      const before = others()
      const lowered = yield* IoThreads.lowerPriority(start + 3)
      assert.deepStrictEqual(lowered, { _tag: "Lowered", threads: pool().length, changed: pool().length, nice: start + 3 })
      assert.deepStrictEqual(nices(pool()), [start + 3])
      assert.deepStrictEqual(nices(others()), nices(before))

      const again = yield* IoThreads.lowerPriority(start + 1)
      assert.deepStrictEqual(again, { _tag: "Lowered", threads: pool().length, changed: 0, nice: start + 1 })
      assert.deepStrictEqual(nices(pool()), [start + 3])
    }))

  it.effect("0 changes nothing", () =>
    Effect.gen(function*() {
      const before = nices(pool())
      assert.deepStrictEqual(yield* IoThreads.lowerPriority(0), { _tag: "Unchanged" })
      assert.deepStrictEqual(nices(pool()), before)
    }))
})
