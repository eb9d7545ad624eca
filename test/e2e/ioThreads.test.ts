/**
 * Each worker lowers its I/O thread pool's priority (`ioThreadNice`, 10 by default) so that the
 * pool's wake-ups do not preempt the event loop, and leaves every other thread, the event loop
 * first, as it was. Read from the kernel's own view of the running daemon's threads.
 */
import * as Fs from "node:fs"
import { afterEach, assert, describe, it } from "@effect/vitest"
import { assertStillDelivers, type Daemon, startDaemon } from "../support/Daemon.ts"

interface ThreadNice {
  readonly name: string
  readonly nice: number
}

/** Every thread of `pid` with its nice value (field 19 of /proc/PID/task/TID/stat). */
const threadsOf = (pid: number): Array<ThreadNice> =>
  Fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = Fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
    // The name is in parentheses and may itself hold spaces or parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { name: Fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim(), nice: Number(fields[16]) }
  })

const nicesByRole = (pid: number) => {
  const threads = threadsOf(pid)
  const pool = threads.filter((t) => t.name === "libuv-worker")
  const others = threads.filter((t) => t.name !== "libuv-worker")
  return { pool: pool.map((t) => t.nice), others: [...new Set(others.map((t) => t.nice))] }
}

describe.runIf(process.platform === "linux")("I/O thread priority", () => {
  const daemons: Array<Daemon> = []
  afterEach(async () => {
    for (const daemon of daemons.splice(0)) await daemon.dispose()
  })

  it("by default every worker's thread-pool threads run at nice 10 and its other threads at 0, and mail still flows", async () => {
    const daemon = await startDaemon({ workers: 2 })
    daemons.push(daemon)
    const workers = daemon.workerPids()
    assert.strictEqual(workers.length, 2)
    for (const pid of workers) {
      const { pool, others } = nicesByRole(pid)
      assert.isAtLeast(pool.length, 1, `worker ${pid} has no libuv-worker threads`)
      assert.deepStrictEqual([...new Set(pool)], [10], `worker ${pid}: pool threads at ${pool.join(", ")}`)
      assert.deepStrictEqual(others, [0], `worker ${pid}: other threads`)
    }
    // The primary does no message I/O and is left alone.
    assert.deepStrictEqual([...new Set(threadsOf(daemon.pid()).map((t) => t.nice))], [0])
    await assertStillDelivers(daemon)
    assert.notInclude(daemon.output().stderr, "I/O threads keep their priority")
  })

  it("ioThreadNice 3 gives the pool nice 3; ioThreadNice 0 leaves it at 0", async () => {
    for (const nice of [3, 0]) {
      const daemon = await startDaemon({ ioThreadNice: nice })
      daemons.push(daemon)
      const [pid] = daemon.workerPids()
      assert.isDefined(pid)
      if (pid === undefined) return
      const { pool, others } = nicesByRole(pid)
      assert.deepStrictEqual([...new Set(pool)], [nice])
      assert.deepStrictEqual(others, [0])
      await assertStillDelivers(daemon)
    }
  })
})
