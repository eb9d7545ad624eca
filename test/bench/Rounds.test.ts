import { assert, describe, it } from "@effect/vitest"
import * as Rounds from "../../bench/Rounds.ts"

const round = (ratio: number, value = String(ratio)) => ({ ratio, value })

describe("Rounds.summarize", () => {
  it("picks the round with the median ratio and gives the spread", () => {
    const summary = Rounds.summarize([round(1.4, "a"), round(1.1, "b"), round(1.25, "c")])
    assert.deepStrictEqual(summary, { median: round(1.25, "c"), min: 1.1, max: 1.4 })
  })

  it("an even count (a failed round among three) gives the higher of the middle two, the one less kind to Postern", () => {
    assert.deepStrictEqual(Rounds.summarize([round(2), round(1), round(4), round(3)])?.median, round(3))
    assert.deepStrictEqual(Rounds.summarize([round(1.6), round(Number.NaN), round(1.2)])?.median, round(1.6))
  })

  it("one round is its own median", () => {
    assert.deepStrictEqual(Rounds.summarize([round(1.3)]), { median: round(1.3), min: 1.3, max: 1.3 })
  })

  it("rounds without a finite ratio (a failed run) are left out; none at all gives undefined", () => {
    assert.deepStrictEqual(Rounds.summarize([round(Number.NaN), round(1.2), round(Number.POSITIVE_INFINITY)]), {
      median: round(1.2),
      min: 1.2,
      max: 1.2
    })
    assert.strictEqual(Rounds.summarize([round(Number.NaN)]), undefined)
    assert.strictEqual(Rounds.summarize([]), undefined)
  })

  it("does not reorder the caller's array", () => {
    const rounds = [round(3), round(1), round(2)]
    Rounds.summarize(rounds)
    assert.deepStrictEqual(rounds.map((r) => r.ratio), [3, 1, 2])
  })
})

describe("Rounds.ceilingFirst", () => {
  it("alternates which target is measured first", () => {
    assert.deepStrictEqual([0, 1, 2, 3].map(Rounds.ceilingFirst), [true, false, true, false])
  })
})
