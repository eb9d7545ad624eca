/**
 * IoThreads.lowerPriority on this test process's own thread pool: it lowers the pool's threads
 * and no other, and never raises a thread that is already lower (which would need privileges
 * and undo an administrator's `nice`).
 */
import * as Fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as IoThreads from "../../src/daemon/IoThreads.ts"

const nices = (name: string, matching: boolean): Array<number> =>
  Fs.readdirSync("/proc/self/task").flatMap((tid) => {
    const isPool = Fs.readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim() === name
    if (isPool !== matching) return []
    const stat = Fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8")
    return [Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16])]
  })

describe.runIf(process.platform === "linux")("IoThreads.lowerPriority", () => {
  it.effect("lowers the pool's threads only, and never raises one already lower", () =>
    Effect.gen(function*() {
      // The pool starts all its threads on its first job.
      yield* Effect.promise(() => Fs.promises.stat("/proc/self"))
      const others = nices("libuv-worker", false)
      const start = Math.max(0, ...nices("libuv-worker", true))
      const lowered = yield* IoThreads.lowerPriority(start + 4)
      assert.strictEqual(lowered._tag, "Lowered")
      assert.deepStrictEqual([...new Set(nices("libuv-worker", true))], [start + 4])
      assert.deepStrictEqual(nices("libuv-worker", false), others)

      const again = yield* IoThreads.lowerPriority(start + 2)
      assert.strictEqual(again._tag, "Lowered")
      assert.deepStrictEqual([...new Set(nices("libuv-worker", true))], [start + 4])
    }))

  it.effect("0 changes nothing", () =>
    Effect.gen(function*() {
      const before = nices("libuv-worker", true)
      assert.deepStrictEqual(yield* IoThreads.lowerPriority(0), { _tag: "Unchanged" })
      assert.deepStrictEqual(nices("libuv-worker", true), before)
    }))
})
