import { assert, describe, it } from "@effect/vitest"
import * as QueueId from "../../src/queue/QueueId.ts"

describe("QueueId", () => {
  it("formats fixed-width upper-case ids that parse back", () => {
    const id = QueueId.format({ time: 1_700_000_000_123, counter: 5, partition: "p3" })
    assert.match(id, /^[0-9A-Z]{10}[0-9A-Z]{3}P3$/)
    assert.deepStrictEqual(QueueId.parse(id), { time: 1_700_000_000_123, counter: 5, partition: "P3" })
    assert.isUndefined(QueueId.parse("short"))
    assert.isUndefined(QueueId.parse("0000000000000p3"))
    assert.isUndefined(QueueId.parse("00000000000I0P3"))
  })

  it("issues strictly increasing ids within a millisecond, across milliseconds and when the clock steps back", () => {
    const ids = QueueId.generator({ partition: "0" })
    const issued = [1000, 1000, 1000, 1001, 999, 5000].map((now) => ids.next(now))
    assert.strictEqual(new Set(issued).size, issued.length)
    assert.deepStrictEqual([...issued].sort(), issued)
    assert.strictEqual(QueueId.parse(issued[4] ?? "")?.time, 1001)
  })

  it("borrows the next millisecond when the counter runs out", () => {
    const ids = QueueId.generator({ partition: "0" })
    let last = ""
    let ordered = true
    for (let i = 0; i < QueueId.counterLimit + 2; i++) {
      const id = ids.next(42)
      ordered = ordered && id > last
      last = id
    }
    assert.isTrue(ordered)
    assert.deepStrictEqual(QueueId.parse(last), { time: 43, counter: 1, partition: "0" })
  })

  it("after a restart, sorts after the largest id already used even if the clock went back", () => {
    const before = QueueId.generator({ partition: "7" })
    const used = [before.next(10_000), before.next(10_000)]
    const after = QueueId.generator({ partition: "7", after: used[1] })
    const next = after.next(9_000)
    assert.isTrue(next > (used[1] ?? ""))
    assert.notInclude(used, next)
  })

  it("ids of different partitions at the same instant differ", () => {
    const a = QueueId.generator({ partition: "1" }).next(5)
    const b = QueueId.generator({ partition: "2" }).next(5)
    assert.notStrictEqual(a, b)
  })

  it("refuses partitions that do not fit an id", () => {
    for (const bad of ["", "a/b", "x:y", "12345678901234567"]) assert.isFalse(QueueId.isValidPartition(bad))
    assert.throws(() => QueueId.generator({ partition: "a/b" }))
  })
})
