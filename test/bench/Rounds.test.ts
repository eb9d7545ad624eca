import { assert, describe, it } from "@effect/vitest"
import * as Rounds from "../../bench/Rounds.ts"

const round = (ratio: number, value = String(ratio)) => ({ ratio, value })

describe("Rounds.summarize", () => {
  it("picks the round with the median ratio and gives the spread", () => {
    const rounds = [round(1.4, "a"), round(1.1, "b"), round(1.25, "c")]
    for (const worse of ["higher", "lower"] as const) {
      assert.deepStrictEqual(Rounds.summarize(rounds, worse), { median: round(1.25, "c"), min: 1.1, max: 1.4, count: 3 })
    }
  })

  it("an even count (a failed round among three) gives the one of the middle two less kind to Postern", () => {
    // A cost (CPU per handshake): the higher one.
    assert.deepStrictEqual(Rounds.summarize([round(2), round(1), round(4), round(3)], "higher")?.median, round(3))
    assert.deepStrictEqual(Rounds.summarize([round(1.6), round(Number.NaN), round(1.2)], "higher")?.median, round(1.6))
    // A rate (messages per second against the ceiling): the lower one.
    assert.deepStrictEqual(Rounds.summarize([round(0.2), round(0.1), round(0.4), round(0.3)], "lower")?.median, round(0.2))
    assert.deepStrictEqual(Rounds.summarize([round(0.3), round(Number.NaN), round(0.25)], "lower")?.median, round(0.25))
  })

  it("one round is its own median", () => {
    assert.deepStrictEqual(Rounds.summarize([round(1.3)], "higher"), { median: round(1.3), min: 1.3, max: 1.3, count: 1 })
    assert.deepStrictEqual(Rounds.summarize([round(0.3)], "lower"), { median: round(0.3), min: 0.3, max: 0.3, count: 1 })
  })

  it("rounds without a finite ratio (a failed run) are left out; none at all gives undefined", () => {
    for (const worse of ["higher", "lower"] as const) {
      assert.deepStrictEqual(Rounds.summarize([round(Number.NaN), round(1.2), round(Number.POSITIVE_INFINITY)], worse), {
        median: round(1.2),
        min: 1.2,
        max: 1.2,
        count: 1
      })
      assert.strictEqual(Rounds.summarize([round(Number.NaN)], worse), undefined)
      assert.strictEqual(Rounds.summarize([], worse), undefined)
    }
  })

  it("does not reorder the caller's array", () => {
    const rounds = [round(3), round(1), round(2)]
    Rounds.summarize(rounds, "lower")
    assert.deepStrictEqual(rounds.map((r) => r.ratio), [3, 1, 2])
  })
})

describe("Rounds.ceilingFirst", () => {
  it("alternates which target is measured first", () => {
    assert.deepStrictEqual([0, 1, 2, 3].map(Rounds.ceilingFirst), [true, false, true, false])
  })
})

describe("Rounds.alternate", () => {
  /** Measurements that record their order and return the next figure of each server. */
  const servers = (ceilings: ReadonlyArray<number>, posterns: ReadonlyArray<number>) => {
    const order: Array<string> = []
    let c = 0
    let p = 0
    return {
      order,
      ceiling: async () => {
        order.push("ceiling")
        return ceilings[c++] ?? Number.NaN
      },
      postern: async () => {
        order.push("postern")
        return posterns[p++] ?? Number.NaN
      }
    }
  }
  const rateRatio = (pair: Rounds.Pair<number>) => pair.postern / pair.ceiling

  it("measures both servers each round, alternating which goes first, and reports the median round", async () => {
    const s = servers([100, 100, 100], [30, 20, 25])
    const result = await Rounds.alternate({ count: 3, ceiling: s.ceiling, postern: s.postern, ratio: rateRatio, worse: "lower" })
    assert.deepStrictEqual(s.order, ["ceiling", "postern", "postern", "ceiling", "ceiling", "postern"])
    assert.deepStrictEqual(result.rounds.map((r) => r.value), [
      { ceiling: 100, postern: 30 },
      { ceiling: 100, postern: 20 },
      { ceiling: 100, postern: 25 }
    ])
    assert.deepStrictEqual(result.chosen, { ratio: 0.25, value: { ceiling: 100, postern: 25 } })
    assert.deepStrictEqual(result.summary && { min: result.summary.min, max: result.summary.max, count: result.summary.count }, {
      min: 0.2,
      max: 0.3,
      count: 3
    })
  })

  it("a failed round (no finite ratio) leaves an even count: the middle round less kind to Postern", async () => {
    const rate = servers([100, 100, 100], [30, Number.NaN, 20])
    const byRate = await Rounds.alternate({ count: 3, ceiling: rate.ceiling, postern: rate.postern, ratio: rateRatio, worse: "lower" })
    assert.strictEqual(byRate.chosen.value.postern, 20)
    const cost = servers([1, 1, 1], [1.5, Number.NaN, 1.2])
    const byCost = await Rounds.alternate({ count: 3, ceiling: cost.ceiling, postern: cost.postern, ratio: rateRatio, worse: "higher" })
    assert.strictEqual(byCost.chosen.value.postern, 1.5)
  })

  it("runs one round when asked for one (or fewer), and with no finite ratio reports the first round", async () => {
    const s = servers([100, 100], [Number.NaN, Number.NaN])
    const result = await Rounds.alternate({ count: 0, ceiling: s.ceiling, postern: s.postern, ratio: rateRatio, worse: "lower" })
    assert.deepStrictEqual(s.order, ["ceiling", "postern"])
    assert.strictEqual(result.summary, undefined)
    assert.strictEqual(result.chosen, result.rounds[0])
  })

  it("ends the run after a failed round when asked to, and only then", async () => {
    const failing = servers([1, 1, 1], [])
    const stopped = await Rounds.alternate({ count: 3, ceiling: failing.ceiling, postern: failing.postern, ratio: rateRatio, worse: "lower", stopAfterFailure: () => true })
    assert.strictEqual(stopped.rounds.length, 1)
    assert.strictEqual(failing.order.filter((side) => side === "postern").length, 1)
    const kept = servers([1, 1, 1], [])
    const keptResult = await Rounds.alternate({ count: 3, ceiling: kept.ceiling, postern: kept.postern, ratio: rateRatio, worse: "lower", stopAfterFailure: () => false })
    assert.strictEqual(keptResult.rounds.length, 3)
    const fine = servers([1, 1, 1], [0.5, 0.5, 0.5])
    const fineResult = await Rounds.alternate({ count: 3, ceiling: fine.ceiling, postern: fine.postern, ratio: rateRatio, worse: "lower", stopAfterFailure: () => true })
    assert.strictEqual(fineResult.rounds.length, 3)
  })
})


describe("Rounds.errors", () => {
  it("names the side that failed, with its message, and nothing for a side that did not", () => {
    assert.deepStrictEqual(Rounds.errors({ msgsPerSec: 1 }, { error: "exited" }), { posternError: "exited" })
    assert.deepStrictEqual(Rounds.errors({ error: "no sink" }, { skipped: "--ceiling-only" }), { ceilingError: "no sink" })
    assert.deepStrictEqual(Rounds.errors({ error: "a" }, { error: "b" }), { ceilingError: "a", posternError: "b" })
    assert.deepStrictEqual(Rounds.errors({ msgsPerSec: 1 }, { msgsPerSec: 2 }), {})
  })
})

describe("Rounds.spread", () => {
  it("says how many rounds the median is of and their range, only for two or more", () => {
    assert.strictEqual(
      Rounds.spread(Rounds.summarize([round(0.31), round(0.36), round(0.3)], "lower")),
      "the median of 3 alternated rounds: 30-36%"
    )
    assert.strictEqual(Rounds.spread(Rounds.summarize([round(0.31), round(Number.NaN)], "lower")), undefined)
    assert.strictEqual(Rounds.spread(undefined), undefined)
  })
})
