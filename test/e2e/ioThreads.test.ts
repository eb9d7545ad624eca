/**
 * Each worker lowers its I/O thread pool's priority (`ioThreadNice`, 10 by default) so that the
 * pool's wake-ups do not preempt the event loop, and leaves every other thread, the event loop
 * first, as it was. Read from the kernel's own view of the running daemon's threads; the
 * daemon inherits the test runner's nice value, which is the baseline.
 */
import * as Os from "node:os"
import { afterEach, assert, describe, it } from "@effect/vitest"
import { assertStillDelivers, type Daemon, startDaemon } from "../support/Daemon.ts"
import { isPool, nices, threadsOf } from "../support/Threads.ts"

const base = Os.getPriority()

const nicesByRole = (pid: number) => {
  const threads = threadsOf(pid)
  return { pool: threads.filter(isPool), others: nices(threads.filter((t) => !isPool(t))) }
}

describe.runIf(process.platform === "linux")("I/O thread priority", () => {
  const daemons: Array<Daemon> = []
  afterEach(async () => {
    for (const daemon of daemons.splice(0)) await daemon.dispose()
  })

  it("by default every worker's thread-pool threads run at nice 10 and its other threads as before, and mail still flows", async () => {
    const daemon = await startDaemon({ workers: 2 })
    daemons.push(daemon)
    const workers = daemon.workerPids()
    assert.strictEqual(workers.length, 2)
    for (const pid of workers) {
      const { pool, others } = nicesByRole(pid)
      assert.isAtLeast(pool.length, 1, `worker ${pid} has no libuv-worker threads`)
      assert.deepStrictEqual(nices(pool), [Math.max(base, 10)], `worker ${pid}: pool threads`)
      assert.deepStrictEqual(others, [base], `worker ${pid}: other threads`)
    }
    // The primary does no message I/O and is left alone.
    assert.deepStrictEqual(nices(threadsOf(daemon.pid())), [base])
    await assertStillDelivers(daemon)
    assert.notInclude(daemon.output().stderr, "ioThreadNice")
  })

  it("ioThreadNice 13 gives the pool nice 13; ioThreadNice 0 leaves it as the process is", async () => {
    for (const nice of [13, 0]) {
      const daemon = await startDaemon({ ioThreadNice: nice })
      daemons.push(daemon)
      const [pid] = daemon.workerPids()
      assert.isDefined(pid)
      if (pid === undefined) return
      const { pool, others } = nicesByRole(pid)
      assert.deepStrictEqual(nices(pool), [Math.max(base, nice)])
      assert.deepStrictEqual(others, [base])
      await assertStillDelivers(daemon)
    }
  })
})
