import { assert, describe, it } from "@effect/vitest"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as NodeUrl from "node:url"
import { Effect } from "effect"
import * as Config from "../../src/config/Config.ts"
import * as Duration from "../../src/config/Duration.ts"
import * as Builtins from "../../src/policy/Builtins.ts"
import * as Policy from "../../src/policy/Policy.ts"
import * as Rule from "../../src/policy/Rule.ts"

const indexUrl = NodeUrl.pathToFileURL(NodePath.resolve(import.meta.dirname, "../../src/index.ts")).href

const issuesOf = (input: unknown): Effect.Effect<ReadonlyArray<string>> =>
  Config.decode(input, "test").pipe(
    Effect.flip,
    Effect.map((error) => error.issues),
    Effect.catch(() => Effect.succeed(["(decoded without error)"]))
  )

const writeConfig = (content: string): string => {
  const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "postern-policy-config-"))
  const file = NodePath.join(directory, "postern.config.ts")
  NodeFs.writeFileSync(file, content)
  return file
}

const blocked = Rule.rule("blocked", () => Rule.deny())

describe("Config: policy", () => {
  it.effect("without a policy section: no rules, every stage accepts, rules that need I/O get 5 s", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode({}, "test")
      assert.deepStrictEqual(config.policy, {
        rules: {},
        // Every stage accepts, as the Policy's own default rule set.
        defaults: Policy.defaultRuleSet.defaults,
        ruleTimeout: 5000,
        bodyLimit: 51_200
      })
    }))

  it.effect("rules by stage, defaults and the rule timeout are taken as given", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode(
        { policy: { rules: { mail: [blocked] }, defaults: { data: "tempfail" }, ruleTimeout: "250ms" } },
        "test"
      )
      assert.strictEqual(config.policy.rules.mail?.[0], blocked)
      assert.strictEqual(config.policy.defaults.data, "tempfail")
      assert.strictEqual(config.policy.defaults.mail, "accept")
      assert.strictEqual(config.policy.ruleTimeout, 250)
    }))

  const cases: ReadonlyArray<readonly [string, unknown, ReadonlyArray<string>]> = [
    [
      "an unknown stage",
      { policy: { rules: { queue: [] } } },
      ["policy.rules.queue: unknown setting; expected one of: connect, helo, auth, mail, rcpt, data, postq, delivery"]
    ],
    [
      "something that is not a rule",
      { policy: { rules: { mail: [{ name: "fake" }] } } },
      ["policy.rules.mail[0]: expected a rule made with rule(name, (context) => verdict), got {\"name\":\"fake\"}"]
    ],
    [
      "a rule list that is not a list",
      { policy: { rules: { rcpt: "relay" } } },
      ["policy.rules.rcpt: expected a list of rules, got \"relay\""]
    ],
    [
      "two rules of one stage with the same name",
      { policy: { rules: { mail: [blocked, Rule.rule("blocked", () => Rule.next)] } } },
      ["policy.rules.mail[1]: expected a unique rule name, got \"blocked\" again (first at index 0)"]
    ],
    [
      "an unknown default",
      { policy: { defaults: { helo: "maybe" } } },
      ["policy.defaults.helo: expected \"accept\", \"deny\" or \"tempfail\", got \"maybe\""]
    ],
    [
      "a rule timeout of zero",
      { policy: { ruleTimeout: 0 } },
      [`policy.ruleTimeout: expected ${Duration.expectedPositive}, got 0`]
    ]
  ]
  for (const [name, input, expected] of cases) {
    it.effect(name, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* issuesOf(input), expected)
      }))
  }

  it.effect("a file with rules: the rules are the functions written there, and `config check` lists them by stage", () =>
    Effect.gen(function*() {
      const file = writeConfig(`import { defineConfig, deny, next, relay, rule } from ${JSON.stringify(indexUrl)}
export default defineConfig({
  policy: {
    rules: {
      mail: [rule("blocked sender", (ctx) => ctx.from === "x@evil.test" ? deny(550, "5.7.1", "No") : next)],
      rcpt: [relay({ internalNetworks: ["10.0.0.0/8"] })]
    }
  }
})
`)
      const config = yield* Config.load(file)
      assert.deepStrictEqual(config.policy.rules.mail?.map((r) => r.name), ["blocked sender"])
      assert.deepStrictEqual(config.policy.rules.rcpt?.map((r) => r.name), ["relay"])
      const summary = yield* Config.check(file)
      assert.include(summary, "  mail     'blocked sender' -> accept")
      assert.include(summary, "  rcpt     'relay' -> accept local recipients, deny relaying")
      assert.deepStrictEqual((yield* Config.loadPolicy(file)).rules.mail?.map((r) => r.name), ["blocked sender"])
    }))

  it.effect("a malformed network in a built-in stops the load with the network named", () =>
    Effect.gen(function*() {
      const file = writeConfig(`import { defineConfig, relay } from ${JSON.stringify(indexUrl)}
export default defineConfig({ policy: { rules: { rcpt: [relay({ internalNetworks: ["10.0.0.0/33"] })] } } })
`)
      const error = yield* Effect.flip(Config.load(file))
      assert.match(error.message, /cannot be loaded: RangeError: network "10\.0\.0\.0\/33"/)
    }))

  it("the configuration handed to workers carries no rules (functions do not survive JSON); they read them from the file", () => {
    const config = {
      ...Config.defaults,
      policy: { ...Config.defaults.policy, rules: { mail: [blocked] }, shadow: { rules: { rcpt: [blocked] }, defaults: Config.defaults.policy.defaults } }
    }
    const handed = Config.fromPrimary(Config.toPrimaryJson(config)).policy
    assert.deepStrictEqual(handed.rules, {})
    assert.isUndefined(handed.shadow)
  })

  it.effect("a shadow rule set: its rules and defaults, listed by config check apart from the live ones", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode({ policy: { shadow: { rules: { rcpt: [blocked] }, defaults: { data: "deny" } } } }, "test")
      assert.strictEqual(config.policy.shadow?.rules.rcpt?.[0], blocked)
      assert.strictEqual(config.policy.shadow?.defaults.data, "deny")
      assert.isDefined(Config.shadowRuleSet(config.policy))
      assert.isUndefined(Config.shadowRuleSet((yield* Config.decode({}, "test")).policy))
      const summary = Config.summary(config, "test")
      assert.include(summary, "shadow policy (recorded beside the live one, never enforced):")
      assert.include(summary, "  rcpt     'blocked' -> accept local recipients, deny relaying")
    }))
})

describe("Config: dns.servers (review: a name instead of an address made workers restart in a loop)", () => {
  for (const server of ["192.0.2.53", "127.0.0.1:5353", "2001:db8::53", "[2001:db8::53]:5353"]) {
    it.effect(`accepts ${server}`, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual((yield* Config.decode({ dns: { servers: [server] } }, "test")).dns.servers, [server])
      }))
  }
  for (const server of ["dns.google", "1.2.3.4:99999", "[dns]:53", ""]) {
    it.effect(`refuses ${JSON.stringify(server)} at load, naming the field`, () =>
      Effect.gen(function*() {
        const issues = yield* issuesOf({ dns: { servers: [server] } })
        assert.deepStrictEqual(issues, [
          `dns.servers[0]: expected a name server address such as "192.0.2.53" or "[2001:db8::53]:5353" (an address, not a name), got ${JSON.stringify(server)}`
        ])
      }))
  }
})

describe("Config.warnings: rules that cannot work as written", () => {
  const warningsOf = (input: unknown) => Effect.map(Config.decode(input, "test"), Config.warnings)

  it.effect("none for the embedded default", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* warningsOf({}), [])
    }))

  it.effect("spf() without spf.check and dmarc() without dkim.verify never decide; dmarc() outside data never decides", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* warningsOf({ policy: { rules: { mail: [Builtins.spf(), Builtins.dmarc()] } } }), [
        "policy.rules.mail: rule 'spf' never decides: spf.check is off",
        "policy.rules.mail: rule 'dmarc' never decides: dkim.verify is off",
        "policy.rules.mail: rule 'dmarc' never decides here: only at data, postq, delivery"
      ])
      assert.deepStrictEqual(yield* warningsOf({ spf: { check: true }, policy: { rules: { mail: [Builtins.spf()] } } }), [])
    }))

  it.effect("spf() on the HELO identity needs spf.helo (on by default with spf.check)", () =>
    Effect.gen(function*() {
      const rules = { policy: { rules: { mail: [Builtins.spf({ identities: "helo" })] } } }
      assert.deepStrictEqual(yield* warningsOf({ ...rules, spf: { check: true } }), [])
      assert.deepStrictEqual(yield* warningsOf({ ...rules, spf: { check: true, helo: false } }), [
        "policy.rules.mail: rule 'spf' never decides: spf.helo is off"
      ])
      // "both" still decides on the sender without the HELO name.
      const both = { policy: { rules: { mail: [Builtins.spf({ identities: "both" })] } } }
      assert.deepStrictEqual(yield* warningsOf({ ...both, spf: { check: true, helo: false } }), [])
    }))

  it.effect("rules after one that answers the same whatever the context never run", () =>
    Effect.gen(function*() {
      const everyone = Rule.rule("everyone else", () => Rule.accept)
      const later = Rule.rule("later", (ctx) => (ctx.from === "x@y.test" ? Rule.deny() : Rule.next))
      const tagging = Rule.rule("tag", () => Rule.next)
      assert.deepStrictEqual(yield* warningsOf({ policy: { rules: { rcpt: [tagging, everyone, later, Builtins.relay()] } } }), [
        "policy.rules.rcpt: rule 'everyone else' always answers accept, so 'later', 'relay' never run"
      ])
      // Last in its stage, or looking at the context, it hides nothing.
      assert.deepStrictEqual(yield* warningsOf({ policy: { rules: { rcpt: [later, everyone] } } }), [])
    }))

  it.effect("a built-in placed where it cannot decide: relay outside rcpt, spf before mail, dkimVerify before data", () =>
    Effect.gen(function*() {
      const input = {
        spf: { check: true },
        dkim: { verify: true },
        policy: { rules: { mail: [Builtins.relay()], helo: [Builtins.spf()], rcpt: [Builtins.dkimVerify(), Builtins.relay()] } }
      }
      assert.deepStrictEqual(yield* warningsOf(input), [
        "policy.rules.helo: rule 'spf' never decides here: only at mail, rcpt, data, postq, delivery",
        "policy.rules.mail: rule 'relay' never decides here: only at rcpt",
        "policy.rules.rcpt: rule 'dkim verify' never decides here: only at data, postq, delivery"
      ])
    }))

  it.effect("auth rules with no listener offering AUTH never run", () =>
    Effect.gen(function*() {
      const config = { listeners: [{ port: 2525, role: "smtp" }], policy: { rules: { auth: [blocked] } } }
      assert.deepStrictEqual(yield* warningsOf(config), ["policy.rules.auth: no listener offers AUTH, so these rules never run"])
    }))

  it.effect("a refusing connect default with no rules refuses everyone; a rule shared with the shadow set shares its state", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* warningsOf({ policy: { defaults: { connect: "deny" } } }), [
        "policy.defaults.connect: \"deny\" with no rules refuses every session"
      ])
      assert.deepStrictEqual(yield* warningsOf({ policy: { rules: { mail: [blocked] }, shadow: { rules: { mail: [blocked] } } } }), [
        "policy.shadow: rule 'blocked' is also a live rule: its state (rate counts) is shared, so the shadow affects live decisions"
      ])
    }))

  it.effect("config check prints them after the summary", () =>
    Effect.gen(function*() {
      const file = writeConfig(`import { defineConfig, spf } from ${JSON.stringify(indexUrl)}
export default defineConfig({ policy: { rules: { mail: [spf()] } } })
`)
      const summary = yield* Config.check(file)
      assert.isTrue(summary.endsWith("\nwarning: policy.rules.mail: rule 'spf' never decides: spf.check is off"))
    }))
})
