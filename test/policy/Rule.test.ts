import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as Rule from "../../src/policy/Rule.ts"
import { context, thrown } from "../support/RuleContext.ts"

// ---------------------------------------------------------------------------------------------
// Contexts and rules


/** The fallback of these tests: an accept that names the stage, so it cannot pass for a rule's. */
const fallbackDecision = (stage: Rule.Stage): Rule.Decision => ({
  verdict: { _tag: "Accept", because: { fallback: stage } },
  rule: undefined
})

/** Records, in order, every rule called and every call of the fallback. */
interface Recorder {
  readonly calls: Array<string>
  readonly contexts: Array<Rule.Context>
  readonly fallback: (context: Rule.Context) => Rule.Decision
  /** A rule that records its call and returns `result` (a value of any kind). */
  readonly rule: (name: string, result: unknown) => Rule.Rule
  /** A rule that records its call and returns `make()` (for Effects, built at each call). */
  readonly lazy: (name: string, make: () => unknown) => Rule.Rule
}

const recorder = (): Recorder => {
  const calls: Array<string> = []
  const contexts: Array<Rule.Context> = []
  const lazy = (name: string, make: () => unknown): Rule.Rule =>
    Rule.rule(name, (c) => {
      calls.push(name)
      contexts.push(c)
      return make() as Rule.Result
    })
  return {
    calls,
    contexts,
    fallback: (c) => {
      calls.push("(fallback)")
      contexts.push(c)
      return fallbackDecision(c.stage)
    },
    rule: (name, result) => lazy(name, () => result),
    lazy
  }
}

const budget = Duration.seconds(5)

/** The decision of a rule that threw, failed, overran or returned something else than a verdict. */
const failed = (rule: string, error: string): Rule.Decision => ({
  verdict: { _tag: "Tempfail", answer: Rule.ruleFailed },
  rule,
  error
})

/** The decision when `evaluate` answered synchronously; fails the test when it built an Effect. */
const decisionOf = (result: Rule.Decision | Effect.Effect<Rule.Decision>): Rule.Decision => {
  if (Effect.isEffect(result)) assert.fail("evaluate returned an Effect for synchronous rules")
  return result
}

/** The Effect `evaluate` built; fails the test when it answered synchronously. */
const effectOf = (result: Rule.Decision | Effect.Effect<Rule.Decision>): Effect.Effect<Rule.Decision> => {
  if (!Effect.isEffect(result)) assert.fail("evaluate answered synchronously for an asynchronous rule")
  return result
}


const assertRangeError = (f: () => unknown, message: string): void => {
  const error = thrown(f)
  assert.instanceOf(error, RangeError)
  assert.strictEqual(error instanceof Error ? error.message : undefined, message)
}

/** A verdict that decides a stage (anything but next), typed as a decision holds it. */
const decisive = (verdict: Rule.Verdict): Rule.Decision["verdict"] => {
  if (verdict._tag === "Next") return assert.fail("next decides nothing")
  return verdict
}

const accept = decisive(Rule.accept)
const deny = decisive(Rule.deny(554, "5.7.1", "No"))
const tempfail = decisive(Rule.tempfail(450, "4.2.0", "Busy"))
const disconnect = decisive(Rule.disconnect(421, "4.7.0", "Bye"))

// ---------------------------------------------------------------------------------------------
// Verdicts

describe("Rule verdicts", () => {
  it("next and accept are plain tags", () => {
    assert.deepStrictEqual(Rule.next, { _tag: "Next" })
    assert.deepStrictEqual(Rule.accept, { _tag: "Accept" })
  })

  const constructed: ReadonlyArray<readonly [string, () => Rule.Verdict, Rule.Verdict]> = [
    ["deny()", () => Rule.deny(), {
      _tag: "Deny",
      answer: { code: 550, enhanced: "5.7.1", text: "Rejected by policy" }
    }],
    ["tempfail()", () => Rule.tempfail(), {
      _tag: "Tempfail",
      answer: { code: 451, enhanced: "4.7.1", text: "Try again later" }
    }],
    ["disconnect()", () => Rule.disconnect(), {
      _tag: "Disconnect",
      answer: { code: 421, enhanced: "4.7.0", text: "Closing connection" }
    }],
    ["deny(554, 5.7.1, text)", () => Rule.deny(554, "5.7.1", "Go away"), {
      _tag: "Deny",
      answer: { code: 554, enhanced: "5.7.1", text: "Go away" }
    }],
    ["deny with a 4xx code", () => Rule.deny(450, "4.2.0", "Mailbox busy"), {
      _tag: "Deny",
      answer: { code: 450, enhanced: "4.2.0", text: "Mailbox busy" }
    }],
    ["deny(code) keeps the other defaults", () => Rule.deny(554), {
      _tag: "Deny",
      answer: { code: 554, enhanced: "5.7.1", text: "Rejected by policy" }
    }],
    ["deny at the low end of its range", () => Rule.deny(400, "4.0.0", "x"), {
      _tag: "Deny",
      answer: { code: 400, enhanced: "4.0.0", text: "x" }
    }],
    ["deny at the high end of its range", () => Rule.deny(599, "5.0.0", "x"), {
      _tag: "Deny",
      answer: { code: 599, enhanced: "5.0.0", text: "x" }
    }],
    ["tempfail at the high end of its range", () => Rule.tempfail(499, "4.999.999", "x"), {
      _tag: "Tempfail",
      answer: { code: 499, enhanced: "4.999.999", text: "x" }
    }],
    ["tempfail(450, 4.2.1, text)", () => Rule.tempfail(450, "4.2.1", "Slow down"), {
      _tag: "Tempfail",
      answer: { code: 450, enhanced: "4.2.1", text: "Slow down" }
    }],
    ["disconnect with a 5xx code", () => Rule.disconnect(554, "5.7.1", "Not welcome"), {
      _tag: "Disconnect",
      answer: { code: 554, enhanced: "5.7.1", text: "Not welcome" }
    }],
    ["an empty text", () => Rule.deny(550, "5.7.1", ""), {
      _tag: "Deny",
      answer: { code: 550, enhanced: "5.7.1", text: "" }
    }]
  ]
  for (const [name, make, expected] of constructed) {
    it(name, () => {
      const verdict = make()
      assert.deepStrictEqual(verdict, expected)
      assert.isFalse("because" in verdict)
    })
  }

  const invalid: ReadonlyArray<readonly [string, () => Rule.Verdict, string]> = [
    ["deny below 400", () => Rule.deny(399), "deny: reply code 399 is not in 400-599"],
    ["deny at 600", () => Rule.deny(600), "deny: reply code 600 is not in 400-599"],
    ["deny with a 2xx code", () => Rule.deny(250), "deny: reply code 250 is not in 400-599"],
    ["deny with a fractional code", () => Rule.deny(550.5), "deny: reply code 550.5 is not in 400-599"],
    ["deny with NaN", () => Rule.deny(Number.NaN), "deny: reply code NaN is not in 400-599"],
    ["tempfail with a 5xx code", () => Rule.tempfail(550, "5.7.1"), "tempfail: reply code 550 is not in 400-499"],
    ["tempfail below 400", () => Rule.tempfail(399), "tempfail: reply code 399 is not in 400-499"],
    ["tempfail at 500", () => Rule.tempfail(500), "tempfail: reply code 500 is not in 400-499"],
    ["disconnect below 400", () => Rule.disconnect(221), "disconnect: reply code 221 is not in 400-599"],
    ["disconnect at 600", () => Rule.disconnect(600), "disconnect: reply code 600 is not in 400-599"],
    ["an enhanced code with two parts", () => Rule.deny(550, "5.7"), "deny: \"5.7\" is not an enhanced status code"],
    ["an enhanced code with four parts", () => Rule.deny(550, "5.7.1.2"), "deny: \"5.7.1.2\" is not an enhanced status code"],
    ["an enhanced code of class 3", () => Rule.deny(550, "3.0.0"), "deny: \"3.0.0\" is not an enhanced status code"],
    ["an enhanced code of class 6", () => Rule.deny(550, "6.0.0"), "deny: \"6.0.0\" is not an enhanced status code"],
    ["a four-digit subject", () => Rule.deny(550, "5.1000.1"), "deny: \"5.1000.1\" is not an enhanced status code"],
    ["a four-digit detail", () => Rule.deny(550, "5.1.1000"), "deny: \"5.1.1000\" is not an enhanced status code"],
    ["an empty subject", () => Rule.deny(550, "5..1"), "deny: \"5..1\" is not an enhanced status code"],
    ["an empty enhanced code", () => Rule.deny(550, ""), "deny: \"\" is not an enhanced status code"],
    ["a leading space", () => Rule.deny(550, " 5.7.1"), "deny: \" 5.7.1\" is not an enhanced status code"],
    ["a trailing space", () => Rule.deny(550, "5.7.1 "), "deny: \"5.7.1 \" is not an enhanced status code"],
    ["letters", () => Rule.deny(550, "x.y.z"), "deny: \"x.y.z\" is not an enhanced status code"],
    ["a malformed tempfail code", () => Rule.tempfail(451, "4.7"), "tempfail: \"4.7\" is not an enhanced status code"],
    ["a malformed disconnect code", () => Rule.disconnect(421, "4-7-0"), "disconnect: \"4-7-0\" is not an enhanced status code"],
    ["a text with CRLF", () => Rule.deny(550, "5.7.1", "one\r\ntwo"), "deny: the text must be one line"],
    ["a text with LF", () => Rule.deny(550, "5.7.1", "one\ntwo"), "deny: the text must be one line"],
    ["a text with CR", () => Rule.deny(550, "5.7.1", "one\rtwo"), "deny: the text must be one line"],
    ["a text ending in LF", () => Rule.deny(550, "5.7.1", "one\n"), "deny: the text must be one line"],
    ["a tempfail text on two lines", () => Rule.tempfail(451, "4.7.1", "a\nb"), "tempfail: the text must be one line"],
    ["a disconnect text on two lines", () => Rule.disconnect(421, "4.7.0", "a\r\nb"), "disconnect: the text must be one line"],
    ["the code is checked first", () => Rule.deny(600, "bad", "a\nb"), "deny: reply code 600 is not in 400-599"],
    ["the enhanced code is checked before the text", () => Rule.deny(550, "bad", "a\nb"), "deny: \"bad\" is not an enhanced status code"]
  ]
  for (const [name, make, message] of invalid) {
    it(`refuses ${name}`, () => {
      assertRangeError(make, message)
    })
  }
})

describe("Rule.because", () => {
  it("attaches the facts to a deny, leaving the original alone", () => {
    const original = Rule.deny(554, "5.7.1", "No")
    const verdict = Rule.because(original, { client: "203.0.113.5" })
    assert.deepStrictEqual(verdict, {
      _tag: "Deny",
      answer: { code: 554, enhanced: "5.7.1", text: "No" },
      because: { client: "203.0.113.5" }
    })
    assert.isFalse("because" in original)
  })

  it("attaches the facts to accept without changing Rule.accept", () => {
    assert.deepStrictEqual(Rule.because(Rule.accept, { network: "10.0.0.0/8" }), {
      _tag: "Accept",
      because: { network: "10.0.0.0/8" }
    })
    assert.deepStrictEqual(Rule.accept, { _tag: "Accept" })
  })

  it("attaches the facts to tempfail and disconnect", () => {
    assert.deepStrictEqual(Rule.because(Rule.tempfail(), { dns: "timeout" }), {
      _tag: "Tempfail",
      answer: { code: 451, enhanced: "4.7.1", text: "Try again later" },
      because: { dns: "timeout" }
    })
    assert.deepStrictEqual(Rule.because(Rule.disconnect(), { rate: "too high" }), {
      _tag: "Disconnect",
      answer: { code: 421, enhanced: "4.7.0", text: "Closing connection" },
      because: { rate: "too high" }
    })
  })

  it("replaces facts already attached", () => {
    const verdict = Rule.because(Rule.because(Rule.deny(), { a: "1" }), { b: "2" })
    assert.deepStrictEqual(verdict, {
      _tag: "Deny",
      answer: { code: 550, enhanced: "5.7.1", text: "Rejected by policy" },
      because: { b: "2" }
    })
  })

  it("leaves next as it is (next records nothing)", () => {
    const verdict = Rule.because(Rule.next, { ignored: "yes" })
    assert.strictEqual(verdict, Rule.next)
    assert.deepStrictEqual(verdict, { _tag: "Next" })
  })
})

describe("Rule.rule", () => {
  it("names a function", () => {
    const evaluate = (): Rule.Result => Rule.next
    const rule = Rule.rule("mine", evaluate)
    assert.strictEqual(rule.name, "mine")
    assert.strictEqual(rule.evaluate, evaluate)
  })

  it("ruleFailed is 451 4.3.0", () => {
    assert.deepStrictEqual(Rule.ruleFailed, {
      code: 451,
      enhanced: "4.3.0",
      text: "Error: policy rule failed; try again later"
    })
  })
})

// ---------------------------------------------------------------------------------------------
// evaluate, synchronous rules

describe("Rule.evaluate with synchronous rules", () => {
  interface Case {
    readonly name: string
    readonly verdicts: ReadonlyArray<Rule.Verdict>
    readonly decision: Rule.Decision
    /** The rules called (named a, b, c... in order), then "(fallback)" when it was asked. */
    readonly calls: ReadonlyArray<string>
  }
  const cases: ReadonlyArray<Case> = [
    {
      name: "no rules: the fallback decides",
      verdicts: [],
      decision: fallbackDecision("rcpt"),
      calls: ["(fallback)"]
    },
    {
      name: "every rule says next: the fallback decides after all of them",
      verdicts: [Rule.next, Rule.next, Rule.next],
      decision: fallbackDecision("rcpt"),
      calls: ["a", "b", "c", "(fallback)"]
    },
    {
      name: "the first deny wins, later rules are not called",
      verdicts: [Rule.next, deny, tempfail, Rule.accept],
      decision: { verdict: deny, rule: "b" },
      calls: ["a", "b"]
    },
    {
      name: "accept stops the stage, even before a deny",
      verdicts: [Rule.accept, deny],
      decision: { verdict: accept, rule: "a" },
      calls: ["a"]
    },
    {
      name: "accept after next stops the stage",
      verdicts: [Rule.next, Rule.accept, deny, deny],
      decision: { verdict: accept, rule: "b" },
      calls: ["a", "b"]
    },
    {
      name: "a tempfail first wins over a later accept",
      verdicts: [tempfail, Rule.accept],
      decision: { verdict: tempfail, rule: "a" },
      calls: ["a"]
    },
    {
      name: "a disconnect at the end",
      verdicts: [Rule.next, Rule.next, disconnect],
      decision: { verdict: disconnect, rule: "c" },
      calls: ["a", "b", "c"]
    },
    {
      name: "the facts of the deciding verdict are kept",
      verdicts: [Rule.next, Rule.because(Rule.accept, { user: "alice" })],
      decision: { verdict: { _tag: "Accept", because: { user: "alice" } }, rule: "b" },
      calls: ["a", "b"]
    },
    {
      name: "next with facts is still next",
      verdicts: [Rule.because(Rule.next, { x: "y" }), deny],
      decision: { verdict: deny, rule: "b" },
      calls: ["a", "b"]
    }
  ]
  const names = ["a", "b", "c", "d", "e"]
  for (const c of cases) {
    it(c.name, () => {
      const r = recorder()
      const rules = c.verdicts.map((verdict, i) => r.rule(names[i] ?? `r${i}`, verdict))
      const result = Rule.evaluate(rules, context(), r.fallback, budget)
      assert.isFalse(Effect.isEffect(result))
      assert.deepStrictEqual(decisionOf(result), c.decision)
      assert.deepStrictEqual(r.calls, c.calls)
    })
  }

  it("the decision holds the rule's verdict itself", () => {
    const r = recorder()
    const verdict = decisive(Rule.deny(550, "5.7.1", "Mine"))
    const decision = decisionOf(Rule.evaluate([r.rule("a", verdict)], context(), r.fallback, budget))
    assert.strictEqual(decision.verdict, verdict)
    assert.isFalse("error" in decision)
  })

  it("every rule and the fallback see the same context", () => {
    const r = recorder()
    const c = context({ stage: "mail", recipient: undefined })
    decisionOf(Rule.evaluate([r.rule("a", Rule.next), r.rule("b", Rule.next)], c, r.fallback, budget))
    assert.deepStrictEqual(r.calls, ["a", "b", "(fallback)"])
    assert.strictEqual(r.contexts.length, 3)
    for (const seen of r.contexts) assert.strictEqual(seen, c)
  })

  it("skips holes in a sparse rule list", () => {
    const r = recorder()
    const rules: Array<Rule.Rule> = []
    rules[1] = r.rule("b", deny)
    const decision = decisionOf(Rule.evaluate(rules, context(), r.fallback, budget))
    assert.deepStrictEqual(decision, { verdict: deny, rule: "b" })
    assert.deepStrictEqual(r.calls, ["b"])
  })

  const throwing: ReadonlyArray<readonly [string, unknown, string]> = [
    ["an Error", new Error("boom"), "threw: boom"],
    ["a TypeError", new TypeError("cannot read x"), "threw: cannot read x"],
    ["a string", "plain string", "threw: plain string"],
    ["a number", 42, "threw: 42"],
    ["undefined", undefined, "threw: undefined"]
  ]
  for (const [name, error, text] of throwing) {
    it(`a rule that throws ${name} tempfails with 451 4.3.0 and names itself`, () => {
      const r = recorder()
      const rules = [
        r.rule("a", Rule.next),
        r.lazy("b", () => {
          throw error
        }),
        r.rule("c", Rule.accept)
      ]
      const result = Rule.evaluate(rules, context(), r.fallback, budget)
      assert.isFalse(Effect.isEffect(result))
      const decision = decisionOf(result)
      assert.deepStrictEqual(decision, failed("b", text))
      assert.isTrue(decision.error?.startsWith("threw:"))
      assert.deepStrictEqual(r.calls, ["a", "b"])
    })
  }

  const notVerdicts: ReadonlyArray<readonly [string, unknown, string]> = [
    ["undefined", undefined, "returned undefined, not a verdict"],
    ["null", null, "returned null, not a verdict"],
    ["a string", "accept", "returned accept, not a verdict"],
    ["a number", 250, "returned 250, not a verdict"],
    ["true", true, "returned true, not a verdict"],
    ["an object without _tag", { verdict: "accept" }, "returned [object Object], not a verdict"],
    ["an empty object", {}, "returned [object Object], not a verdict"],
    ["an unknown _tag", { _tag: "Maybe" }, "returned [object Object], not a verdict"],
    ["a lowercase tag", { _tag: "accept" }, "returned [object Object], not a verdict"],
    ["a deny without an answer", { _tag: "Deny" }, "returned [object Object], not a verdict"],
    ["a tempfail without an answer", { _tag: "Tempfail" }, "returned [object Object], not a verdict"],
    ["a disconnect without an answer", { _tag: "Disconnect" }, "returned [object Object], not a verdict"],
    ["an array", ["Accept"], "returned Accept, not a verdict"],
    ["a Promise (an async function)", Promise.resolve(Rule.accept), "returned a Promise, not a verdict: a rule that needs I/O returns an Effect (Effect.promise(() => ...))"]
  ]
  for (const [name, value, text] of notVerdicts) {
    it(`a rule that returns ${name} tempfails with 451 4.3.0`, () => {
      const r = recorder()
      const rules = [r.rule("a", Rule.next), r.rule("b", value), r.rule("c", Rule.accept)]
      const result = Rule.evaluate(rules, context(), r.fallback, budget)
      assert.isFalse(Effect.isEffect(result))
      assert.deepStrictEqual(decisionOf(result), failed("b", text))
      assert.deepStrictEqual(r.calls, ["a", "b"])
    })
  }

  it("a rule that throws after an accept is never called", () => {
    const r = recorder()
    const rules = [
      r.rule("a", Rule.accept),
      r.lazy("b", () => {
        throw new Error("never")
      })
    ]
    assert.deepStrictEqual(decisionOf(Rule.evaluate(rules, context(), r.fallback, budget)), {
      verdict: accept,
      rule: "a"
    })
    assert.deepStrictEqual(r.calls, ["a"])
  })
})

// ---------------------------------------------------------------------------------------------
// evaluate, rules that return an Effect

describe("Rule.evaluate with a rule that returns an Effect", () => {
  it.effect("an Effect that succeeds with a verdict decides", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [
        r.rule("a", Rule.next),
        r.lazy("b", () => Effect.succeed(deny)),
        r.rule("c", Rule.accept)
      ]
      const result = Rule.evaluate(rules, context(), r.fallback, budget)
      assert.isTrue(Effect.isEffect(result))
      const decision = yield* effectOf(result)
      assert.deepStrictEqual(decision, { verdict: deny, rule: "b" })
      assert.isFalse("error" in decision)
      // "a" was called once, before the Effect was built, and not again when it ran.
      assert.deepStrictEqual(r.calls, ["a", "b"])
    }))

  it.effect("an Effect that accepts stops the stage", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [
        r.lazy("a", () => Effect.succeed(Rule.because(Rule.accept, { lookup: "ok" }))),
        r.rule("b", deny)
      ]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision, { verdict: { _tag: "Accept", because: { lookup: "ok" } }, rule: "a" })
      assert.deepStrictEqual(r.calls, ["a"])
    }))

  it.effect("after an Effect that says next, the synchronous rules run in order", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [
        r.lazy("a", () => Effect.succeed(Rule.next)),
        r.rule("b", Rule.next),
        r.rule("c", tempfail),
        r.rule("d", deny)
      ]
      const result = effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      // Building the Effect called only the first rule; the others wait for it to run.
      assert.deepStrictEqual(r.calls, ["a"])
      const decision = yield* result
      assert.deepStrictEqual(decision, { verdict: tempfail, rule: "c" })
      assert.deepStrictEqual(r.calls, ["a", "b", "c"])
    }))

  it.effect("synchronous and asynchronous rules interleave in order", () =>
    Effect.gen(function*() {
      const r = recorder()
      const ran: Array<string> = []
      const later = (name: string, verdict: Rule.Verdict) =>
        r.lazy(name, () => Effect.sync(() => {
          ran.push(name)
          return verdict
        }))
      const rules = [
        r.rule("a", Rule.next),
        later("b", Rule.next),
        r.rule("c", Rule.next),
        later("d", Rule.next),
        r.rule("e", disconnect),
        r.rule("f", deny)
      ]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision, { verdict: disconnect, rule: "e" })
      assert.deepStrictEqual(r.calls, ["a", "b", "c", "d", "e"])
      assert.deepStrictEqual(ran, ["b", "d"])
    }))

  it.effect("when every rule says next, the fallback decides", () =>
    Effect.gen(function*() {
      const r = recorder()
      const c = context({ stage: "data", size: 1234 })
      const rules = [r.lazy("a", () => Effect.succeed(Rule.next)), r.rule("b", Rule.next)]
      const decision = yield* effectOf(Rule.evaluate(rules, c, r.fallback, budget))
      assert.deepStrictEqual(decision, fallbackDecision("data"))
      assert.deepStrictEqual(r.calls, ["a", "b", "(fallback)"])
      for (const seen of r.contexts) assert.strictEqual(seen, c)
    }))

  it.effect("an Effect that fails tempfails and names the rule", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [r.lazy("dns", () => Effect.fail("lookup refused")), r.rule("b", Rule.accept)]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision.verdict, { _tag: "Tempfail", answer: Rule.ruleFailed })
      assert.strictEqual(decision.rule, "dns")
      const error = decision.error ?? ""
      assert.isTrue(error.startsWith("failed: "), error)
      assert.include(error, "lookup refused")
      assert.deepStrictEqual(r.calls, ["dns"])
    }))

  it.effect("an Effect that fails with an Error tempfails with its message", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [r.lazy("dns", () => Effect.fail(new Error("SERVFAIL")))]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision.verdict, { _tag: "Tempfail", answer: Rule.ruleFailed })
      assert.strictEqual(decision.rule, "dns")
      const error = decision.error ?? ""
      assert.isTrue(error.startsWith("failed: "), error)
      assert.include(error, "SERVFAIL")
    }))

  it.effect("an Effect that dies tempfails and names the rule", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [r.rule("a", Rule.next), r.lazy("b", () => Effect.die(new Error("defect here"))), r.rule("c", deny)]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision.verdict, { _tag: "Tempfail", answer: Rule.ruleFailed })
      assert.strictEqual(decision.rule, "b")
      const error = decision.error ?? ""
      assert.isTrue(error.startsWith("failed: "), error)
      assert.include(error, "defect here")
      assert.deepStrictEqual(r.calls, ["a", "b"])
    }))

  it.effect("an Effect that succeeds with a non-verdict tempfails", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [r.lazy("a", () => Effect.succeed("accept")), r.rule("b", Rule.accept)]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision, failed("a", "returned accept, not a verdict"))
      assert.deepStrictEqual(r.calls, ["a"])
    }))

  it.effect("an Effect that succeeds with undefined tempfails", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [r.lazy("a", () => Effect.succeed(undefined))]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision, failed("a", "returned undefined, not a verdict"))
    }))

  it.effect("a synchronous rule that throws after an Effect tempfails and names itself", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [
        r.lazy("a", () => Effect.succeed(Rule.next)),
        r.lazy("b", () => {
          throw new Error("late boom")
        }),
        r.rule("c", Rule.accept)
      ]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision, failed("b", "threw: late boom"))
      assert.deepStrictEqual(r.calls, ["a", "b"])
    }))

  it.effect("a synchronous rule that returns a non-verdict after an Effect tempfails", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [r.lazy("a", () => Effect.succeed(Rule.next)), r.rule("b", { _tag: "Maybe" }), r.rule("c", deny)]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.deepStrictEqual(decision, failed("b", "returned [object Object], not a verdict"))
      assert.deepStrictEqual(r.calls, ["a", "b"])
    }))

  it.effect("a second Effect that fails names the second rule", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [
        r.lazy("first", () => Effect.succeed(Rule.next)),
        r.lazy("second", () => Effect.fail(new Error("second failed"))),
        r.rule("third", Rule.accept)
      ]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, budget))
      assert.strictEqual(decision.rule, "second")
      assert.deepStrictEqual(decision.verdict, { _tag: "Tempfail", answer: Rule.ruleFailed })
      assert.include(decision.error ?? "", "second failed")
      assert.deepStrictEqual(r.calls, ["first", "second"])
    }))

  it("the Effect is evaluated with Effect.runPromise too", async () => {
    const r = recorder()
    const rules = [r.rule("a", Rule.next), r.lazy("b", () => Effect.succeed(Rule.next)), r.rule("c", deny)]
    const decision = await Effect.runPromise(effectOf(Rule.evaluate(rules, context(), r.fallback, budget)))
    assert.deepStrictEqual(decision, { verdict: deny, rule: "c" })
    assert.deepStrictEqual(r.calls, ["a", "b", "c"])
  })

  it.live("an Effect that overruns its budget tempfails, is interrupted, and later rules are not called", () =>
    Effect.gen(function*() {
      const r = recorder()
      let interrupted = false
      const slow = Effect.sleep(Duration.seconds(10)).pipe(
        Effect.as(Rule.accept),
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            interrupted = true
          })
        )
      )
      const rules = [r.rule("a", Rule.next), r.lazy("slow dns", () => slow), r.rule("c", Rule.accept)]
      const started = Date.now()
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, Duration.millis(20)))
      const elapsed = Date.now() - started
      assert.deepStrictEqual(decision, failed("slow dns", "took longer than 20ms"))
      assert.isTrue(interrupted)
      assert.isBelow(elapsed, 5000)
      assert.deepStrictEqual(r.calls, ["a", "slow dns"])
    }))

  it.live("the budget is per rule: each Effect within it is fine", () =>
    Effect.gen(function*() {
      const r = recorder()
      const quick = (verdict: Rule.Verdict) => Effect.sleep(Duration.millis(5)).pipe(Effect.as(verdict))
      const rules = [
        r.lazy("a", () => quick(Rule.next)),
        r.lazy("b", () => quick(Rule.next)),
        r.lazy("c", () => quick(deny))
      ]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, Duration.millis(500)))
      assert.deepStrictEqual(decision, { verdict: deny, rule: "c" })
      assert.deepStrictEqual(r.calls, ["a", "b", "c"])
    }))

  it.live("a later Effect that overruns names itself with the budget", () =>
    Effect.gen(function*() {
      const r = recorder()
      const rules = [
        r.lazy("a", () => Effect.succeed(Rule.next)),
        r.rule("b", Rule.next),
        r.lazy("c", () => Effect.never),
        r.rule("d", Rule.accept)
      ]
      const decision = yield* effectOf(Rule.evaluate(rules, context(), r.fallback, Duration.millis(20)))
      assert.deepStrictEqual(decision, failed("c", "took longer than 20ms"))
      assert.deepStrictEqual(r.calls, ["a", "b", "c"])
    }))
})

describe("Rule: what review found (each was a bug)", () => {
  it("the enhanced code's class must be the reply's (RFC 3463 section 3)", () => {
    assertRangeError(() => Rule.tempfail(451, "5.7.1"), "tempfail: enhanced code 5.7.1 does not match reply code 451 (RFC 3463: same class)")
    assertRangeError(() => Rule.deny(550, "4.7.1"), "deny: enhanced code 4.7.1 does not match reply code 550 (RFC 3463: same class)")
    assertRangeError(() => Rule.deny(550, "2.0.0"), "deny: enhanced code 2.0.0 does not match reply code 550 (RFC 3463: same class)")
    assert.deepStrictEqual(Rule.deny(451, "4.7.3", "Must issue a STARTTLS command first"), {
      _tag: "Deny",
      answer: { code: 451, enhanced: "4.7.3", text: "Must issue a STARTTLS command first" }
    })
  })

  it("421 closes the connection (RFC 5321 3.8), so only disconnect may answer it", () => {
    assertRangeError(() => Rule.deny(421, "4.7.0"), "deny: 421 closes the connection; use disconnect")
    assertRangeError(() => Rule.tempfail(421, "4.7.0"), "tempfail: 421 closes the connection; use disconnect")
    assert.deepStrictEqual(Rule.disconnect(421, "4.7.0", "Bye"), { _tag: "Disconnect", answer: { code: 421, enhanced: "4.7.0", text: "Bye" } })
  })

  it("a rule that throws or returns a value without a string form still gives 451 4.3.0, never an exception", () => {
    const bare: unknown = Object.create(null)
    const throwing = Rule.rule("throws bare", () => {
      throw bare
    })
    const returning = Rule.rule("returns bare", () => bare as Rule.Verdict)
    assert.deepStrictEqual(
      decisionOf(Rule.evaluate([throwing], context(), () => fallbackDecision("rcpt"), budget)),
      failed("throws bare", "threw: [object Object]")
    )
    assert.deepStrictEqual(
      decisionOf(Rule.evaluate([returning], context(), () => fallbackDecision("rcpt"), budget)),
      failed("returns bare", "returned [object Object], not a verdict")
    )
  })

  it.effect("the same after a rule that returned an Effect", () =>
    Effect.gen(function*() {
      const bare: unknown = Object.create(null)
      const first = Rule.rule("async", () => Effect.succeed(Rule.next))
      const returning = Rule.rule("returns bare", () => bare as Rule.Verdict)
      const decision = yield* effectOf(Rule.evaluate([first, returning], context(), () => fallbackDecision("rcpt"), budget))
      assert.deepStrictEqual(decision, failed("returns bare", "returned [object Object], not a verdict"))
    }))

  it("a Deny without a well-formed answer is not a verdict", () => {
    for (const answer of [null, {}, { code: "550", enhanced: "5.7.1", text: "x" }, { code: 550, enhanced: "5.7.1" }]) {
      const rule = Rule.rule("malformed", () => ({ _tag: "Deny", answer }) as unknown as Rule.Verdict)
      const decision = decisionOf(Rule.evaluate([rule], context(), () => fallbackDecision("rcpt"), budget))
      assert.strictEqual(decision.verdict._tag, "Tempfail", JSON.stringify(answer))
      assert.strictEqual(decision.rule, "malformed")
      assert.match(decision.error ?? "", /not a verdict$/)
    }
  })
})

describe("Rule.withHeaders", () => {
  it("adds header fields to next and accept; names must be ftext, values one line", () => {
    assert.deepStrictEqual(Rule.withHeaders(Rule.next, { "X-Spam-Score": "3.1" }), { _tag: "Next", headers: [{ name: "X-Spam-Score", value: "3.1" }] })
    assert.deepStrictEqual(Rule.withHeaders(Rule.withHeaders(Rule.accept, { A: "1" }), { B: "2" }), {
      _tag: "Accept",
      headers: [{ name: "A", value: "1" }, { name: "B", value: "2" }]
    })
    assert.strictEqual((thrown(() => Rule.withHeaders(Rule.next, { "Bad Name": "x" })) as Error).message, "withHeaders: \"Bad Name\" is not a header field name")
    assert.strictEqual((thrown(() => Rule.withHeaders(Rule.next, { "X-A": "two\r\nlines" })) as Error).message, "withHeaders: the value of X-A must be one line")
  })

  const tag = (name: string, value: string) => Rule.rule(`tag ${name}`, () => Rule.withHeaders(Rule.next, { [name]: value }))
  const decide = (rules: ReadonlyArray<Rule.Rule>) => decisionOf(Rule.evaluate(rules, context({ stage: "data" }), () => ({ verdict: { _tag: "Accept" }, rule: undefined }), budget))

  it("the fields of every rule that went on are added, in rule order, to an accepted message", () => {
    assert.deepStrictEqual(decide([tag("X-A", "1"), tag("X-B", "2")]), { verdict: { _tag: "Accept" }, rule: undefined, headers: [{ name: "X-A", value: "1" }, { name: "X-B", value: "2" }] })
    const accepting = Rule.rule("ok", () => Rule.withHeaders(Rule.accept, { "X-C": "3" }))
    assert.deepStrictEqual(decide([tag("X-A", "1"), accepting, tag("X-Never", "0")]).headers, [{ name: "X-A", value: "1" }, { name: "X-C", value: "3" }])
  })

  it("a refusal adds nothing", () => {
    const refusing = Rule.rule("no", () => Rule.deny(554, "5.7.1", "No"))
    assert.deepStrictEqual(decide([tag("X-A", "1"), refusing]), { verdict: { _tag: "Deny", answer: { code: 554, enhanced: "5.7.1", text: "No" } }, rule: "no" })
  })

  it("anywhere but data and postq the rule counts as failed: there is no message to add them to, or it is on its way", () => {
    for (const stage of ["connect", "helo", "auth", "mail", "rcpt", "delivery"] as const) {
      const decision = decisionOf(Rule.evaluate([tag("X-A", "1")], context({ stage }), () => ({ verdict: { _tag: "Accept" }, rule: undefined }), budget))
      assert.deepStrictEqual(decision, {
        verdict: { _tag: "Tempfail", answer: Rule.ruleFailed },
        rule: "tag X-A",
        error: "header fields can only be added at the data and postq stages"
      }, stage)
    }
    assert.deepStrictEqual(decisionOf(Rule.evaluate([tag("X-A", "1")], context({ stage: "postq" }), () => ({ verdict: { _tag: "Accept" }, rule: undefined }), budget)).headers, [{ name: "X-A", value: "1" }])
  })

  it.effect("the same after a rule that returned an Effect", () =>
    Effect.gen(function*() {
      const later = Rule.rule("later", () => Effect.succeed(Rule.withHeaders(Rule.next, { "X-B": "2" })))
      const decision = yield* effectOf(Rule.evaluate([tag("X-A", "1"), later], context({ stage: "data" }), () => ({ verdict: { _tag: "Accept" }, rule: undefined }), budget))
      assert.deepStrictEqual(decision.headers, [{ name: "X-A", value: "1" }, { name: "X-B", value: "2" }])
    }))
})

describe("Rule.evaluate: results that are not verdicts (review findings)", () => {
  const evaluateOne = (result: unknown) =>
    decisionOf(Rule.evaluate([Rule.rule("r", () => result as Rule.Verdict)], context(), () => ({ verdict: { _tag: "Accept" }, rule: undefined }), budget))

  it("a Promise (an async rule) is a failure with a hint, and its rejection is caught", async () => {
    const rejected = Promise.reject(new Error("lookup failed"))
    const decision = evaluateOne(rejected)
    assert.strictEqual(decision.verdict._tag, "Tempfail")
    assert.strictEqual(decision.error, "returned a Promise, not a verdict: a rule that needs I/O returns an Effect (Effect.promise(() => ...))")
    await new Promise((done) => setTimeout(done, 10))
  })

  const malformed: ReadonlyArray<readonly [string, unknown]> = [
    ["a reply line injected through the text", { _tag: "Deny", answer: { code: 250, enhanced: "2.0.0", text: "ok\r\n250 injected" } }],
    ["a 2xx code in a Deny", { _tag: "Deny", answer: { code: 250, enhanced: "2.0.0", text: "ok" } }],
    ["a 5xx code in a Tempfail", { _tag: "Tempfail", answer: { code: 550, enhanced: "5.7.1", text: "no" } }],
    ["a 421 in a Deny", { _tag: "Deny", answer: { code: 421, enhanced: "4.7.0", text: "bye" } }],
    ["a class mismatch", { _tag: "Deny", answer: { code: 550, enhanced: "4.7.1", text: "no" } }],
    ["a header value with CRLF", { _tag: "Next", headers: [{ name: "X-A", value: "a\r\nBcc: x@y" }] }],
    ["a header name with a space", { _tag: "Accept", headers: [{ name: "X A", value: "1" }] }],
    ["headers that are not a list", { _tag: "Next", headers: 5 }]
  ]
  for (const [name, result] of malformed) {
    it(`${name}: 451 4.3.0, never sent`, () => {
      const decision = evaluateOne(result)
      assert.deepStrictEqual(decision.verdict, { _tag: "Tempfail", answer: Rule.ruleFailed })
      assert.match(decision.error ?? "", /not a verdict$/)
    })
  }
})
