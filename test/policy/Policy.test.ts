import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as Policy from "../../src/policy/Policy.ts"
import * as Rule from "../../src/policy/Rule.ts"
import { context } from "../support/RuleContext.ts"

// ---------------------------------------------------------------------------------------------
// Contexts, rule sets and decisions


/** A context for a stage, with the recipient local (the relay check does not apply). */
const at = (stage: Rule.Stage, overrides: Partial<Rule.Context> = {}): Rule.Context => context({ stage, ...overrides })

/** A recipient outside the local domains, at rcpt. */
const remote = (recipient: string, overrides: Partial<Rule.Context> = {}): Rule.Context =>
  context({ stage: "rcpt", recipient, recipientIsLocal: false, ...overrides })

const allAccept: Policy.RuleSet["defaults"] = Policy.defaultRuleSet.defaults

const ruleSet = (
  rules: Policy.RuleSet["rules"],
  defaults: Partial<Policy.RuleSet["defaults"]> = {},
  ruleTimeout: Duration.Duration = Duration.seconds(5)
): Policy.RuleSet => ({ rules, defaults: { ...allAccept, ...defaults }, ruleTimeout })

const decideNow = (policy: Policy.PolicyShape, c: Rule.Context): Rule.Decision => {
  const result = policy.decide(c)
  if (Effect.isEffect(result)) return assert.fail("the policy built an Effect for synchronous rules")
  return result
}

const decideLater = (policy: Policy.PolicyShape, c: Rule.Context): Effect.Effect<Rule.Decision> => {
  const result = policy.decide(c)
  if (!Effect.isEffect(result)) return assert.fail("the policy answered synchronously for an asynchronous rule")
  return result
}

const accepted: Rule.Decision = { verdict: { _tag: "Accept" }, rule: undefined }

const relayDenied = (recipient: string): Rule.Decision => ({
  verdict: {
    _tag: "Deny",
    answer: { code: 554, enhanced: "5.7.1", text: `<${recipient}>: Relay access denied` },
    because: { recipient: "not in a local domain" }
  },
  rule: undefined
})

const refused = (stage: Rule.Stage): Rule.Decision => ({
  verdict: { _tag: "Deny", answer: { code: 554, enhanced: "5.7.1", text: `Error: ${stage} refused by policy` } },
  rule: undefined
})

const deferred = (stage: Rule.Stage): Rule.Decision => ({
  verdict: { _tag: "Tempfail", answer: { code: 451, enhanced: "4.7.1", text: `Error: ${stage} deferred by policy` } },
  rule: undefined
})

/** A rule that records its calls (with the stage it was asked at) and returns `result`. */
const recording = (calls: Array<string>, name: string, result: () => Rule.Result): Rule.Rule =>
  Rule.rule(name, (c) => {
    calls.push(`${name}@${c.stage}`)
    return result()
  })

// ---------------------------------------------------------------------------------------------

describe("Policy.stages and defaultRuleSet", () => {
  it("the stages, in session order", () => {
    assert.deepStrictEqual(Policy.stages, ["connect", "helo", "auth", "mail", "rcpt", "data", "postq", "delivery"])
  })

  it("the default rule set: no rules, every stage accepts, 5 s per rule", () => {
    assert.deepStrictEqual(Policy.defaultRuleSet.rules, {})
    assert.deepStrictEqual(Policy.defaultRuleSet.defaults, allAccept)
    assert.strictEqual(Duration.toMillis(Policy.defaultRuleSet.ruleTimeout), 5000)
  })
})

describe("Policy.make(defaultRuleSet)", () => {
  const policy = Policy.make(Policy.defaultRuleSet)

  for (const stage of Policy.stages) {
    it(`accepts ${stage} with no rule, synchronously`, () => {
      const result = policy.decide(at(stage))
      assert.isFalse(Effect.isEffect(result))
      assert.deepStrictEqual(decideNow(policy, at(stage)), accepted)
    })
  }

  for (const stage of Policy.stages.filter((s) => s !== "rcpt")) {
    it(`the relay check is only at rcpt: ${stage} with recipientIsLocal false is accepted`, () => {
      const decision = decideNow(policy, at(stage, { recipient: undefined, recipientIsLocal: false }))
      assert.deepStrictEqual(decision, accepted)
      assert.strictEqual(decision.rule, undefined)
    })
  }

  it("asks about no stage, except rcpt for a recipient outside the local domains or not said to be local (relaying is still refused)", () => {
    for (const stage of Policy.stages) {
      assert.isFalse(policy.asks(stage, true), `${stage}, local recipient`)
      assert.strictEqual(policy.asks(stage, false), stage === "rcpt", `${stage}, non-local recipient`)
      assert.strictEqual(policy.asks(stage), stage === "rcpt", `${stage}, locality not given`)
    }
  })

  it("denies a non-local recipient: 554 5.7.1 Relay access denied", () => {
    assert.deepStrictEqual(decideNow(policy, remote("x@remote.example")), relayDenied("x@remote.example"))
  })

  it("denies a non-local recipient even from an authenticated, secured client", () => {
    const c = remote("y@elsewhere.example", { authenticated: "alice", isSecured: true })
    assert.deepStrictEqual(decideNow(policy, c), relayDenied("y@elsewhere.example"))
  })

  it("a non-local recipient without an address gives an empty path", () => {
    assert.deepStrictEqual(
      decideNow(policy, context({ stage: "rcpt", recipient: undefined, recipientIsLocal: false })),
      relayDenied("")
    )
  })
})

describe("Policy.relayDenied", () => {
  it("names the recipient and why", () => {
    assert.deepStrictEqual(Policy.relayDenied("bob@example.org"), {
      _tag: "Deny",
      answer: { code: 554, enhanced: "5.7.1", text: "<bob@example.org>: Relay access denied" },
      because: { recipient: "not in a local domain" }
    })
  })
})

describe("Policy relay protection", () => {
  it("rules that all say next leave a non-local recipient denied", () => {
    const calls: Array<string> = []
    const policy = Policy.make(ruleSet({
      rcpt: [recording(calls, "a", () => Rule.next), recording(calls, "b", () => Rule.next)]
    }))
    assert.deepStrictEqual(decideNow(policy, remote("x@remote.example")), relayDenied("x@remote.example"))
    assert.deepStrictEqual(calls, ["a@rcpt", "b@rcpt"])
  })

  it("a rule that accepts a non-local recipient with acceptRelay wins", () => {
    const policy = Policy.make(ruleSet({
      rcpt: [Rule.rule("next", () => Rule.next), Rule.rule("relay friends", () => Rule.because(Rule.acceptRelay, { friend: "yes" }))]
    }))
    assert.deepStrictEqual(decideNow(policy, remote("x@remote.example")), {
      verdict: { _tag: "Accept", relay: true, because: { friend: "yes" } },
      rule: "relay friends"
    })
  })

  it("a plain accept of a non-local recipient is still the relay refusal, naming the rule that accepted", () => {
    const policy = Policy.make(ruleSet({ rcpt: [Rule.rule("friends", () => Rule.accept)] }))
    assert.deepStrictEqual(decideNow(policy, remote("x@remote.example")), {
      verdict: {
        _tag: "Deny",
        answer: { code: 554, enhanced: "5.7.1", text: "<x@remote.example>: Relay access denied" },
        because: { recipient: "not in a local domain", accepted: "by rule 'friends', which does not relay (use acceptRelay)" }
      },
      rule: "friends"
    })
  })

  it("a rule's own deny of a non-local recipient is the decision", () => {
    const policy = Policy.make(ruleSet({ rcpt: [Rule.rule("mine", () => Rule.deny(550, "5.7.1", "Not here"))] }))
    assert.deepStrictEqual(decideNow(policy, remote("x@remote.example")), {
      verdict: { _tag: "Deny", answer: { code: 550, enhanced: "5.7.1", text: "Not here" } },
      rule: "mine"
    })
  })

  it("a rule that throws for a non-local recipient tempfails, it is not relayed", () => {
    const policy = Policy.make(ruleSet({
      rcpt: [Rule.rule("broken", () => {
        throw new Error("oops")
      })]
    }))
    assert.deepStrictEqual(decideNow(policy, remote("x@remote.example")), {
      verdict: { _tag: "Tempfail", answer: Rule.ruleFailed },
      rule: "broken",
      error: "threw: oops"
    })
  })

  const stageDefaults: ReadonlyArray<Policy.StageDefault> = ["accept", "deny", "tempfail"]
  for (const setting of stageDefaults) {
    it(`a rcpt default "${setting}" still denies a non-local recipient as relaying`, () => {
      const policy = Policy.make(ruleSet({}, { rcpt: setting }))
      assert.deepStrictEqual(decideNow(policy, remote("x@remote.example")), relayDenied("x@remote.example"))
    })
  }

  it.effect("an asynchronous rule that accepts a non-local recipient with acceptRelay wins", () =>
    Effect.gen(function*() {
      const policy = Policy.make(ruleSet({ rcpt: [Rule.rule("lookup", () => Effect.succeed(Rule.acceptRelay))] }))
      assert.deepStrictEqual(yield* decideLater(policy, remote("x@remote.example")), {
        verdict: { _tag: "Accept", relay: true },
        rule: "lookup"
      })
    }))

  it.effect("an asynchronous rule that says next leaves a non-local recipient denied", () =>
    Effect.gen(function*() {
      const policy = Policy.make(ruleSet({
        rcpt: [Rule.rule("lookup", () => Effect.succeed(Rule.next)), Rule.rule("sync", () => Rule.next)]
      }))
      assert.deepStrictEqual(yield* decideLater(policy, remote("x@remote.example")), relayDenied("x@remote.example"))
    }))
})

describe("Policy stage defaults", () => {
  interface Case {
    readonly stage: Rule.Stage
    readonly setting: Policy.StageDefault
    readonly decision: Rule.Decision
  }
  const cases: Array<Case> = []
  for (const stage of Policy.stages) {
    cases.push({ stage, setting: "accept", decision: accepted })
    cases.push({ stage, setting: "deny", decision: refused(stage) })
    cases.push({ stage, setting: "tempfail", decision: deferred(stage) })
  }
  for (const c of cases) {
    it(`${c.stage} "${c.setting}" when no rule decides`, () => {
      const calls: Array<string> = []
      const policy = Policy.make(ruleSet({ [c.stage]: [recording(calls, "a", () => Rule.next)] }, { [c.stage]: c.setting }))
      assert.deepStrictEqual(decideNow(policy, at(c.stage)), c.decision)
      assert.deepStrictEqual(calls, [`a@${c.stage}`])
    })
  }

  it("the default text names the stage: deny at mail is 554 5.7.1", () => {
    const decision = decideNow(Policy.make(ruleSet({}, { mail: "deny" })), at("mail"))
    assert.deepStrictEqual(decision.verdict, {
      _tag: "Deny",
      answer: { code: 554, enhanced: "5.7.1", text: "Error: mail refused by policy" }
    })
  })

  it("the default text names the stage: tempfail at data is 451 4.7.1", () => {
    const decision = decideNow(Policy.make(ruleSet({}, { data: "tempfail" })), at("data", { size: 100 }))
    assert.deepStrictEqual(decision.verdict, {
      _tag: "Tempfail",
      answer: { code: 451, enhanced: "4.7.1", text: "Error: data deferred by policy" }
    })
  })

  it("a stage's default applies to that stage only", () => {
    const policy = Policy.make(ruleSet({}, { helo: "deny", data: "tempfail" }))
    assert.deepStrictEqual(decideNow(policy, at("connect")), accepted)
    assert.deepStrictEqual(decideNow(policy, at("helo")), refused("helo"))
    assert.deepStrictEqual(decideNow(policy, at("mail")), accepted)
    assert.deepStrictEqual(decideNow(policy, at("rcpt")), accepted)
    assert.deepStrictEqual(decideNow(policy, at("data")), deferred("data"))
  })

  it("a rule that accepts overrides a deny default", () => {
    const policy = Policy.make(ruleSet({ mail: [Rule.rule("ok", () => Rule.accept)] }, { mail: "deny" }))
    assert.deepStrictEqual(decideNow(policy, at("mail")), { verdict: { _tag: "Accept" }, rule: "ok" })
  })

  it("a rule that denies overrides an accept default", () => {
    const policy = Policy.make(ruleSet({ helo: [Rule.rule("no", () => Rule.deny(550, "5.7.1", "Bad HELO"))] }))
    assert.deepStrictEqual(decideNow(policy, at("helo")), {
      verdict: { _tag: "Deny", answer: { code: 550, enhanced: "5.7.1", text: "Bad HELO" } },
      rule: "no"
    })
  })
})

describe("Policy stages are separate", () => {
  for (const stage of Policy.stages) {
    it(`at ${stage} only ${stage}'s rules run`, () => {
      const calls: Array<string> = []
      const rules: Policy.RuleSet["rules"] = {
        connect: [recording(calls, "connect", () => Rule.next)],
        helo: [recording(calls, "helo", () => Rule.next)],
        auth: [recording(calls, "auth", () => Rule.next)],
        mail: [recording(calls, "mail", () => Rule.next)],
        rcpt: [recording(calls, "rcpt", () => Rule.next)],
        data: [recording(calls, "data", () => Rule.deny(552, "5.3.4", "Too big"))],
        postq: [recording(calls, "postq", () => Rule.next)],
        delivery: [recording(calls, "delivery", () => Rule.next)]
      }
      const decision = decideNow(Policy.make(ruleSet(rules)), at(stage))
      assert.deepStrictEqual(calls, [`${stage}@${stage}`])
      assert.deepStrictEqual(
        decision,
        stage === "data"
          ? { verdict: { _tag: "Deny", answer: { code: 552, enhanced: "5.3.4", text: "Too big" } }, rule: "data" }
          : accepted
      )
    })
  }

  it("a stage without rules accepts while another stage's rule denies", () => {
    const calls: Array<string> = []
    const policy = Policy.make(ruleSet({ mail: [recording(calls, "deny mail", () => Rule.deny())] }))
    assert.deepStrictEqual(decideNow(policy, at("rcpt")), accepted)
    assert.deepStrictEqual(decideNow(policy, at("connect")), accepted)
    assert.deepStrictEqual(calls, [])
    assert.deepStrictEqual(decideNow(policy, at("mail")), {
      verdict: { _tag: "Deny", answer: { code: 550, enhanced: "5.7.1", text: "Rejected by policy" } },
      rule: "deny mail"
    })
    assert.deepStrictEqual(calls, ["deny mail@mail"])
  })

  it("a stage's rules run in the order given", () => {
    const calls: Array<string> = []
    const policy = Policy.make(ruleSet({
      rcpt: [
        recording(calls, "first", () => Rule.next),
        recording(calls, "second", () => Rule.tempfail()),
        recording(calls, "third", () => Rule.accept)
      ]
    }))
    assert.deepStrictEqual(decideNow(policy, at("rcpt")), {
      verdict: { _tag: "Tempfail", answer: { code: 451, enhanced: "4.7.1", text: "Try again later" } },
      rule: "second"
    })
    assert.deepStrictEqual(calls, ["first@rcpt", "second@rcpt"])
  })
})

describe("Policy rule timeout", () => {
  it.live("a rule that overruns the rule set's ruleTimeout tempfails", () =>
    Effect.gen(function*() {
      const policy = Policy.make(ruleSet(
        { mail: [Rule.rule("slow", () => Effect.sleep(Duration.seconds(10)).pipe(Effect.as(Rule.accept)))] },
        {},
        Duration.millis(20)
      ))
      assert.deepStrictEqual(yield* decideLater(policy, at("mail")), {
        verdict: { _tag: "Tempfail", answer: Rule.ruleFailed },
        rule: "slow",
        error: "took longer than 20ms"
      })
    }))
})

describe("Policy.layer", () => {
  it.effect("provides the policy of a rule set", () =>
    Effect.gen(function*() {
      const policy = yield* Policy.Policy
      assert.deepStrictEqual(decideNow(policy, at("helo")), refused("helo"))
      assert.deepStrictEqual(decideNow(policy, remote("x@remote.example")), relayDenied("x@remote.example"))
      assert.deepStrictEqual(decideNow(policy, at("rcpt")), accepted)
    }).pipe(Effect.provide(Policy.Policy.layer(ruleSet({}, { helo: "deny" })))))
})
