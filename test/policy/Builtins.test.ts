import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as Builtins from "../../src/policy/Builtins.ts"
import * as Rule from "../../src/policy/Rule.ts"
import { context, thrown } from "../support/RuleContext.ts"
import * as SystemError from "../../src/log/SystemError.ts"

// ---------------------------------------------------------------------------------------------
// Contexts


const from = (address: string): Pick<Rule.Context, "client"> => ({ client: { address, ip: address, port: 40000, name: undefined } })

/** A recipient outside the local domains, at rcpt. */
const remote = (overrides: Partial<Rule.Context> = {}): Rule.Context =>
  context({ stage: "rcpt", recipient: "x@remote.example", recipientIsLocal: false, ...overrides })

/** What a built-in rule returns; they are all synchronous. */
const verdictOf = (rule: Rule.Rule, c: Rule.Context): Rule.Verdict => {
  const result = rule.evaluate(c)
  if (Effect.isEffect(result)) return assert.fail(`${rule.name} returned an Effect`)
  return result
}

/** A built-in, a context, and the verdict it must give. */
interface Case {
  readonly name: string
  readonly rule: Rule.Rule
  readonly context: Rule.Context
  readonly verdict: Rule.Verdict
}

const verdictTable = (cases: ReadonlyArray<Case>): void => {
  for (const c of cases) {
    it(c.name, () => {
      assert.deepStrictEqual(verdictOf(c.rule, c.context), c.verdict)
    })
  }
}


const relayDeniedFor = (recipient: string, client: string): Rule.Verdict => ({
  _tag: "Deny",
  answer: { code: 554, enhanced: "5.7.1", text: `<${recipient}>: Relay access denied` },
  because: { client, recipient: "not in a local domain" }
})

const tlsRequired: Rule.Verdict = {
  _tag: "Deny",
  answer: { code: 530, enhanced: "5.7.0", text: "Must issue a STARTTLS command first" },
  because: { secured: "no" }
}

// ---------------------------------------------------------------------------------------------

describe("Builtins.networks", () => {
  const within = Builtins.networks("10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "198.51.100.7", "::1")

  it("keeps the texts as written", () => {
    assert.deepStrictEqual(within.texts, ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "198.51.100.7", "::1"])
  })

  const matches: ReadonlyArray<readonly [string, string | undefined]> = [
    ["10.0.0.0", "10.0.0.0/8"],
    ["10.1.2.3", "10.0.0.0/8"],
    ["10.255.255.255", "10.0.0.0/8"],
    ["11.0.0.0", undefined],
    ["9.255.255.255", undefined],
    ["192.168.1.200", "192.168.1.0/24"],
    ["192.168.2.1", undefined],
    ["2001:db8::1", "2001:db8::/32"],
    ["2001:db8:ffff:ffff::1", "2001:db8::/32"],
    ["2001:DB8::A", "2001:db8::/32"],
    ["2001:db9::1", undefined],
    ["198.51.100.7", "198.51.100.7"],
    ["198.51.100.8", undefined],
    ["198.51.100.6", undefined],
    ["::1", "::1"],
    ["::2", undefined],
    ["::ffff:10.1.2.3", "10.0.0.0/8"],
    ["::ffff:198.51.100.7", "198.51.100.7"],
    ["::ffff:11.1.2.3", undefined],
    ["203.0.113.5", undefined],
    ["not an address", undefined],
    ["", undefined]
  ]
  for (const [address, expected] of matches) {
    it(`matches ${JSON.stringify(address)} to ${expected ?? "nothing"}`, () => {
      assert.strictEqual(within.match(address), expected)
    })
  }

  it("the first network as written wins", () => {
    assert.strictEqual(Builtins.networks("10.0.0.0/8", "10.1.0.0/16").match("10.1.2.3"), "10.0.0.0/8")
    assert.strictEqual(Builtins.networks("10.1.0.0/16", "10.0.0.0/8").match("10.1.2.3"), "10.1.0.0/16")
    assert.strictEqual(Builtins.networks("10.1.0.0/16", "10.0.0.0/8").match("10.2.0.1"), "10.0.0.0/8")
  })

  it("an IPv4-mapped IPv6 network matches IPv4 clients, and names itself as written", () => {
    const mapped = Builtins.networks("::ffff:10.0.0.0/104")
    assert.strictEqual(mapped.match("10.1.2.3"), "::ffff:10.0.0.0/104")
    assert.strictEqual(mapped.match("::ffff:10.1.2.3"), "::ffff:10.0.0.0/104")
    assert.strictEqual(mapped.match("11.1.2.3"), undefined)
  })

  it("an IPv6 network does not match IPv4 clients", () => {
    assert.strictEqual(Builtins.networks("::/0").match("10.1.2.3"), undefined)
    assert.strictEqual(Builtins.networks("::/0").match("2001:db8::1"), "::/0")
  })

  it("no networks match nothing", () => {
    const none = Builtins.networks()
    assert.deepStrictEqual(none.texts, [])
    assert.strictEqual(none.match("10.1.2.3"), undefined)
    assert.strictEqual(none.match("::1"), undefined)
  })

  it("0.0.0.0/0 matches every IPv4 client, mapped or not", () => {
    const all = Builtins.networks("0.0.0.0/0")
    assert.strictEqual(all.match("1.2.3.4"), "0.0.0.0/0")
    assert.strictEqual(all.match("::ffff:1.2.3.4"), "0.0.0.0/0")
    assert.strictEqual(all.match("2001:db8::1"), undefined)
  })

  const bad: ReadonlyArray<string> = [
    "10.0.0.0/33",
    "2001:db8::/129",
    "not-a-network",
    "",
    "10.0.0.0/8 ",
    "10.0.0/8",
    "10.0.0.0/-1",
    "[::1]"
  ]
  for (const text of bad) {
    it(`throws a RangeError on ${JSON.stringify(text)}`, () => {
      const error = thrown(() => Builtins.networks("10.0.0.0/8", text))
      assert.instanceOf(error, RangeError)
      const message = SystemError.describe(error)
      assert.isTrue(
        message.startsWith(`network ${JSON.stringify(text)}: invalid network ${JSON.stringify(text)}: `),
        message
      )
    })
  }

  it("names the network a CIDR with host bits set meant", () => {
    const error = thrown(() => Builtins.networks("10.1.2.3/8"))
    assert.instanceOf(error, RangeError)
    assert.strictEqual(
      SystemError.describe(error),
      "network \"10.1.2.3/8\": invalid network \"10.1.2.3/8\": host bits are set (did you mean 10.0.0.0/8?)"
    )
  })

  it("names the first bad network", () => {
    const error = thrown(() => Builtins.networks("10.0.0.0/8", "bad one", "bad two"))
    assert.isTrue(SystemError.describe(error).startsWith("network \"bad one\": "), SystemError.describe(error))
  })
})

describe("Builtins.inNetwork", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, boolean]> = [
    ["10.1.2.3", ["10.0.0.0/8"], true],
    ["::ffff:10.1.2.3", ["10.0.0.0/8"], true],
    ["11.1.2.3", ["10.0.0.0/8"], false],
    ["192.0.2.1", ["10.0.0.0/8", "192.0.2.0/24"], true],
    ["2001:db8::5", ["2001:db8::/32"], true],
    ["2001:db8::5", ["10.0.0.0/8"], false],
    ["192.0.2.1", ["192.0.2.1"], true],
    ["192.0.2.2", ["192.0.2.1"], false],
    ["192.0.2.1", [], false],
    ["garbage", ["0.0.0.0/0"], false]
  ]
  for (const [address, texts, expected] of cases) {
    it(`${address} in [${texts.join(", ")}] is ${expected} (texts)`, () => {
      assert.strictEqual(Builtins.inNetwork(address, texts), expected)
    })
    it(`${address} in [${texts.join(", ")}] is ${expected} (networks value)`, () => {
      assert.strictEqual(Builtins.inNetwork(address, Builtins.networks(...texts)), expected)
    })
  }

  it("the issue's example rule: ctx.client.ip is the client's address, for inNetwork", () => {
    const internal = Builtins.networks("10.0.0.0/8")
    const unencrypted = Rule.rule("deny unencrypted", (ctx) =>
      ctx.isSecured || Builtins.inNetwork(ctx.client.ip, internal) ? Rule.next : Rule.deny(451, "4.7.3", "Must issue a STARTTLS command first"))
    assert.deepStrictEqual(verdictOf(unencrypted, context({ stage: "mail", ...from("10.9.8.7") })), Rule.next)
    assert.deepStrictEqual(verdictOf(unencrypted, context({ stage: "mail", isSecured: true })), Rule.next)
    assert.deepStrictEqual(verdictOf(unencrypted, context({ stage: "mail" })), Rule.deny(451, "4.7.3", "Must issue a STARTTLS command first"))
  })

  it("throws a RangeError on a bad CIDR text", () => {
    const error = thrown(() => Builtins.inNetwork("10.1.2.3", ["10.0.0.0/40"]))
    assert.instanceOf(error, RangeError)
    assert.isTrue(SystemError.describe(error).startsWith("network \"10.0.0.0/40\": "), SystemError.describe(error))
  })
})

describe("Builtins.inDomain", () => {
  const cases: ReadonlyArray<readonly [string, string | undefined, ReadonlyArray<string>, boolean]> = [
    ["exact", "user@example.com", ["example.com"], true],
    ["one of several", "user@b.example", ["a.example", "b.example"], true],
    ["address in upper case", "User@EXAMPLE.COM", ["example.com"], true],
    ["domain list in upper case", "user@example.com", ["Example.COM"], true],
    ["another domain", "user@example.org", ["example.com"], false],
    ["a subdomain is not the domain", "user@mail.example.com", ["example.com"], false],
    ["a parent is not the domain", "user@example.com", ["mail.example.com"], false],
    ["a suffix is not the domain", "user@badexample.com", ["example.com"], false],
    ["the last @ decides (local)", "\"x@evil.example\"@local.test", ["local.test"], true],
    ["the last @ decides (remote)", "\"x@local.test\"@evil.example", ["local.test"], false],
    ["an address with two @", "a@local.test@evil.example", ["local.test"], false],
    ["a percent hack is not local", "user%evil.example@other.example", ["evil.example"], false],
    ["no domains", "user@example.com", [], false],
    ["undefined", undefined, ["example.com"], false],
    ["undefined with no domains", undefined, [], false],
    ["the null sender", "", ["example.com"], false],
    ["no @ at all is no domain", "postmaster", ["postmaster"], false]
  ]
  for (const [name, address, domains, expected] of cases) {
    it(`${name}: ${JSON.stringify(address)} in [${domains.join(", ")}] is ${expected}`, () => {
      assert.strictEqual(Builtins.inDomain(address, domains), expected)
    })
  }
})

describe("Builtins.relay", () => {
  const defaults = Builtins.relay()
  const internal = Builtins.relay({ internalNetworks: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"] })
  const noAuth = Builtins.relay({ internalNetworks: ["10.0.0.0/8"], authenticated: false })

  it("is named relay", () => {
    assert.strictEqual(defaults.name, "relay")
  })

  const cases: ReadonlyArray<Case> = [
    {
      name: "a local recipient goes on to the next rule",
      rule: internal,
      context: context({ recipient: "user@local.test", recipientIsLocal: true }),
      verdict: Rule.next
    },
    {
      name: "a local recipient from an unknown client goes on",
      rule: defaults,
      context: context({ ...from("198.51.100.1"), recipientIsLocal: true }),
      verdict: Rule.next
    },
    {
      name: "a local recipient from an authenticated client goes on (nothing to accept)",
      rule: defaults,
      context: context({ authenticated: "alice", recipientIsLocal: true }),
      verdict: Rule.next
    },
    {
      name: "an authenticated client may relay",
      rule: defaults,
      context: remote({ authenticated: "alice" }),
      verdict: { _tag: "Accept", relay: true, because: { authenticated: "alice" } }
    },
    {
      name: "an authenticated client may relay from outside the internal networks",
      rule: internal,
      context: remote({ ...from("198.51.100.1"), authenticated: "bob@local.test" }),
      verdict: { _tag: "Accept", relay: true, because: { authenticated: "bob@local.test" } }
    },
    {
      name: "authentication is named before the network when both apply",
      rule: internal,
      context: remote({ ...from("10.1.2.3"), authenticated: "alice" }),
      verdict: { _tag: "Accept", relay: true, because: { authenticated: "alice" } }
    },
    {
      name: "an internal IPv4 client may relay, the CIDR named as written",
      rule: internal,
      context: remote(from("10.1.2.3")),
      verdict: { _tag: "Accept", relay: true, because: { network: "10.0.0.0/8" } }
    },
    {
      name: "an internal client seen as IPv4-mapped IPv6 may relay",
      rule: internal,
      context: remote(from("::ffff:10.1.2.3")),
      verdict: { _tag: "Accept", relay: true, because: { network: "10.0.0.0/8" } }
    },
    {
      name: "an internal IPv6 client may relay",
      rule: internal,
      context: remote(from("2001:db8::25")),
      verdict: { _tag: "Accept", relay: true, because: { network: "2001:db8::/32" } }
    },
    {
      name: "an internal single address may relay",
      rule: internal,
      context: remote(from("192.0.2.7")),
      verdict: { _tag: "Accept", relay: true, because: { network: "192.0.2.7" } }
    },
    {
      name: "the address next to an internal single address may not",
      rule: internal,
      context: remote(from("192.0.2.8")),
      verdict: relayDeniedFor("x@remote.example", "192.0.2.8")
    },
    {
      name: "an outside client may not relay",
      rule: internal,
      context: remote(from("198.51.100.1")),
      verdict: relayDeniedFor("x@remote.example", "198.51.100.1")
    },
    {
      name: "with no internal networks an anonymous client may not relay",
      rule: defaults,
      context: remote(from("10.1.2.3")),
      verdict: relayDeniedFor("x@remote.example", "10.1.2.3")
    },
    {
      name: "the refusal names the recipient",
      rule: defaults,
      context: remote({ recipient: "Someone@Far.Example" }),
      verdict: relayDeniedFor("Someone@Far.Example", "203.0.113.5")
    },
    {
      name: "authenticated: false refuses an authenticated outside client",
      rule: noAuth,
      context: remote({ ...from("198.51.100.1"), authenticated: "alice" }),
      verdict: relayDeniedFor("x@remote.example", "198.51.100.1")
    },
    {
      name: "authenticated: false still lets an internal client relay",
      rule: noAuth,
      context: remote({ ...from("10.9.9.9"), authenticated: "alice" }),
      verdict: { _tag: "Accept", relay: true, because: { network: "10.0.0.0/8" } }
    },
    {
      name: "authenticated: false leaves a local recipient to the next rule",
      rule: noAuth,
      context: context({ ...from("198.51.100.1"), recipientIsLocal: true }),
      verdict: Rule.next
    },
    {
      name: "authenticated: true is the default",
      rule: Builtins.relay({ authenticated: true }),
      context: remote({ authenticated: "carol" }),
      verdict: { _tag: "Accept", relay: true, because: { authenticated: "carol" } }
    }
  ]
  verdictTable(cases)

  const otherStages: ReadonlyArray<Rule.Stage> = ["connect", "helo", "mail", "data"]
  for (const stage of otherStages) {
    it(`says next at ${stage}, even for a remote recipient and an outside client`, () => {
      const c = remote({ stage, ...from("198.51.100.1") })
      assert.deepStrictEqual(verdictOf(internal, c), Rule.next)
      assert.deepStrictEqual(verdictOf(defaults, c), Rule.next)
    })
  }

  it("throws a RangeError on a bad internal network when built", () => {
    const error = thrown(() => Builtins.relay({ internalNetworks: ["10.0.0.1/8"] }))
    assert.instanceOf(error, RangeError)
    assert.strictEqual(
      SystemError.describe(error),
      "network \"10.0.0.1/8\": invalid network \"10.0.0.1/8\": host bits are set (did you mean 10.0.0.0/8?)"
    )
  })
})

describe("Builtins.requireTls", () => {
  const plain = Builtins.requireTls()
  const excepting = Builtins.requireTls({ except: ["127.0.0.1", "10.0.0.0/8", "::1"] })

  it("is named require tls", () => {
    assert.strictEqual(plain.name, "require tls")
  })

  const cases: ReadonlyArray<Case> = [
    {
      name: "a secured session goes on",
      rule: plain,
      context: context({ stage: "mail", isSecured: true }),
      verdict: Rule.next
    },
    {
      name: "a secured session from an excepted network goes on",
      rule: excepting,
      context: context({ stage: "mail", isSecured: true, ...from("10.1.2.3") }),
      verdict: Rule.next
    },
    {
      name: "a plaintext session from an excepted network goes on",
      rule: excepting,
      context: context({ stage: "mail", ...from("10.1.2.3") }),
      verdict: Rule.next
    },
    {
      name: "a plaintext session from an excepted single address goes on",
      rule: excepting,
      context: context({ stage: "mail", ...from("127.0.0.1") }),
      verdict: Rule.next
    },
    {
      name: "a plaintext session from an excepted address seen as IPv4-mapped goes on",
      rule: excepting,
      context: context({ stage: "mail", ...from("::ffff:127.0.0.1") }),
      verdict: Rule.next
    },
    {
      name: "a plaintext session from an excepted IPv6 address goes on",
      rule: excepting,
      context: context({ stage: "mail", ...from("::1") }),
      verdict: Rule.next
    },
    {
      name: "a plaintext session is refused with 530 5.7.0",
      rule: plain,
      context: context({ stage: "mail" }),
      verdict: tlsRequired
    },
    {
      name: "a plaintext session from outside the excepted networks is refused",
      rule: excepting,
      context: context({ stage: "mail", ...from("127.0.0.2") }),
      verdict: tlsRequired
    },
    {
      name: "an authenticated plaintext session is refused too",
      rule: plain,
      context: context({ stage: "rcpt", authenticated: "alice" }),
      verdict: tlsRequired
    }
  ]
  verdictTable(cases)

  for (const stage of ["connect", "helo", "mail", "rcpt", "data"] as const) {
    it(`refuses plaintext at ${stage}, where it is placed`, () => {
      assert.deepStrictEqual(verdictOf(plain, context({ stage })), tlsRequired)
      assert.deepStrictEqual(verdictOf(plain, context({ stage, isSecured: true })), Rule.next)
    })
  }

  it("a custom verdict replaces the refusal", () => {
    const rule = Builtins.requireTls({ verdict: Rule.disconnect(421, "4.7.0", "TLS required, goodbye") })
    assert.deepStrictEqual(verdictOf(rule, context({ stage: "connect" })), {
      _tag: "Disconnect",
      answer: { code: 421, enhanced: "4.7.0", text: "TLS required, goodbye" },
      because: { secured: "no" }
    })
    assert.deepStrictEqual(verdictOf(rule, context({ stage: "connect", isSecured: true })), Rule.next)
  })

  it("a custom tempfail verdict, with exceptions", () => {
    const rule = Builtins.requireTls({ verdict: Rule.tempfail(450, "4.7.0", "Encrypt first"), except: ["10.0.0.0/8"] })
    assert.deepStrictEqual(verdictOf(rule, context({ ...from("198.51.100.1") })), {
      _tag: "Tempfail",
      answer: { code: 450, enhanced: "4.7.0", text: "Encrypt first" },
      because: { secured: "no" }
    })
    assert.deepStrictEqual(verdictOf(rule, context({ ...from("10.0.0.1") })), Rule.next)
  })

  it("throws a RangeError on a bad excepted network when built", () => {
    const error = thrown(() => Builtins.requireTls({ except: ["localhost"] }))
    assert.instanceOf(error, RangeError)
    assert.isTrue(SystemError.describe(error).startsWith("network \"localhost\": invalid network \"localhost\": "), SystemError.describe(error))
  })
})

describe("Builtins.rateLimit", () => {
  const at = (ms: number, address = "192.0.2.1"): Rule.Context => context({ at: 1_000_000 + ms, ...from(address) })
  const verdicts = (rule: Rule.Rule, contexts: ReadonlyArray<Rule.Context>): Array<string> =>
    contexts.map((c) => {
      const v = verdictOf(rule, c)
      return v._tag === "Next" ? "next" : v._tag === "Accept" ? "accept" : v._tag === "Quarantine" ? `quarantine ${v.name}` : `${v._tag} ${v.answer.code} ${v.answer.enhanced}`
    })

  it("lets `limit` through per window, then gives 451 4.7.1 with what it counted", () => {
    const limited = Builtins.rateLimit({ limit: 2, per: "1m" })
    assert.strictEqual(limited.name, "rate limit")
    assert.deepStrictEqual(verdicts(limited, [at(0), at(1), at(2), at(3)]), ["next", "next", "Tempfail 451 4.7.1", "Tempfail 451 4.7.1"])
    assert.deepStrictEqual(verdictOf(limited, at(4)), {
      _tag: "Tempfail",
      answer: { code: 451, enhanced: "4.7.1", text: "Rate limit exceeded; try again later" },
      because: { key: "192.0.2.1", count: "5", limit: "2" }
    })
  })

  it("a new window starts once `per` has passed since the first count (the context's time, not the clock)", () => {
    const limited = Builtins.rateLimit({ limit: 1, per: 60_000 })
    assert.deepStrictEqual(verdicts(limited, [at(0), at(59_999), at(60_000), at(60_001)]), ["next", "Tempfail 451 4.7.1", "next", "Tempfail 451 4.7.1"])
  })

  it("a clock that stepped back starts a new window rather than limiting forever", () => {
    const limited = Builtins.rateLimit({ limit: 1, per: "1h" })
    assert.deepStrictEqual(verdicts(limited, [at(10_000), at(5_000)]), ["next", "next"])
  })

  it("counts per client address, or per the given key; excepted networks are never limited", () => {
    const perClient = Builtins.rateLimit({ limit: 1, per: "1m", except: ["10.0.0.0/8"] })
    assert.deepStrictEqual(
      verdicts(perClient, [at(0, "192.0.2.1"), at(1, "192.0.2.2"), at(2, "192.0.2.1"), at(3, "10.1.1.1"), at(4, "10.1.1.1")]),
      ["next", "next", "Tempfail 451 4.7.1", "next", "next"]
    )
    const perSender = Builtins.rateLimit({ name: "sender rate", limit: 1, per: "1m", key: (c) => c.from ?? "" })
    assert.strictEqual(perSender.name, "sender rate")
    assert.deepStrictEqual(
      verdicts(perSender, [context({ at: 1, from: "a@x.test" }), context({ at: 2, from: "b@x.test" }), context({ at: 3, from: "a@x.test" })]),
      ["next", "next", "Tempfail 451 4.7.1"]
    )
  })

  it("the refusal can be chosen", () => {
    const limited = Builtins.rateLimit({ limit: 1, per: "1m", verdict: Rule.disconnect(421, "4.7.0", "Too many connections") })
    assert.deepStrictEqual(verdicts(limited, [at(0), at(1)]), ["next", "Disconnect 421 4.7.0"])
  })

  it("a limit or window that makes no sense is refused when the configuration loads", () => {
    assert.strictEqual((thrown(() => Builtins.rateLimit({ limit: 0, per: "1m" })) as Error).message, "rateLimit: limit must be a positive integer, got 0")
    assert.strictEqual((thrown(() => Builtins.rateLimit({ limit: 1, per: "soon" })) as Error).message, "rateLimit: per must be a positive duration, got \"soon\"")
    assert.strictEqual((thrown(() => Builtins.rateLimit({ limit: 1, per: 0 })) as Error).message, "rateLimit: per must be a positive duration, got 0")
  })
})

describe("Builtins.spf", () => {
  const checked = (result: Rule.SpfView["result"]): Rule.Context => context({ stage: "mail", spf: { result, domain: "sender.test", comment: undefined } })
  const rule = Builtins.spf()

  const cases: ReadonlyArray<readonly [Rule.SpfView["result"], Rule.Verdict]> = [
    ["pass", Rule.next],
    ["none", Rule.next],
    ["neutral", Rule.next],
    ["softfail", Rule.next],
    ["permerror", Rule.next],
    ["fail", Rule.because(Rule.deny(550, "5.7.23", "SPF validation failed"), { spf: "fail", domain: "sender.test", identity: "mail" })],
    ["temperror", Rule.because(Rule.tempfail(451, "4.7.24", "SPF validation error; try again later"), { spf: "temperror", domain: "sender.test", identity: "mail" })]
  ]
  for (const [result, verdict] of cases) {
    it(`by default ${result} → ${verdict._tag}`, () => {
      assert.deepStrictEqual(verdictOf(rule, checked(result)), verdict)
    })
  }

  it("the verdict per result can be chosen; without an SPF result (checking off) it goes on", () => {
    const strict = Builtins.spf({ on: { softfail: Rule.deny(550, "5.7.23", "Softfail refused"), fail: Rule.next } })
    assert.deepStrictEqual(verdictOf(strict, checked("softfail")), Rule.because(Rule.deny(550, "5.7.23", "Softfail refused"), { spf: "softfail", domain: "sender.test", identity: "mail" }))
    assert.deepStrictEqual(verdictOf(strict, checked("fail")), Rule.next)
    assert.deepStrictEqual(verdictOf(rule, context({ stage: "mail" })), Rule.next)
    assert.strictEqual(rule.name, "spf")
  })

  describe("identities (vSMTP's check_spf(\"both\", ...))", () => {
    const view = (result: Rule.SpfView["result"], domain: string): Rule.SpfView => ({ result, domain, comment: undefined })
    const refused = (identity: string, domain: string) =>
      Rule.because(Rule.deny(550, "5.7.23", "SPF validation failed"), { spf: "fail", domain, identity })
    const cases: ReadonlyArray<readonly [string, "mail" | "helo" | "both", Rule.SpfView | undefined, Rule.SpfView | undefined, Rule.Verdict]> = [
      ["mail ignores the HELO name's fail", "mail", view("fail", "helo.test"), view("pass", "sender.test"), Rule.next],
      ["helo decides on the HELO name's fail", "helo", view("fail", "helo.test"), view("pass", "sender.test"), refused("helo", "helo.test")],
      ["helo ignores the sender's fail", "helo", view("pass", "helo.test"), view("fail", "sender.test"), Rule.next],
      ["both: the HELO name's fail decides first", "both", view("fail", "helo.test"), view("fail", "sender.test"), refused("helo", "helo.test")],
      ["both: then the sender's", "both", view("pass", "helo.test"), view("fail", "sender.test"), refused("mail", "sender.test")],
      ["both: an unchecked HELO name (an address literal) leaves the sender's", "both", undefined, view("fail", "sender.test"), refused("mail", "sender.test")],
      ["both: both pass", "both", view("pass", "helo.test"), view("pass", "sender.test"), Rule.next]
    ]
    for (const [name, identities, spfHelo, spf, verdict] of cases) {
      it(name, () => {
        assert.deepStrictEqual(verdictOf(Builtins.spf({ identities }), context({ stage: "mail", spf, spfHelo })), verdict)
      })
    }

    it("the HELO identity alone needs spf.helo; every identity is checked at MAIL, so the rule decides from mail on", () => {
      assert.deepStrictEqual(Builtins.spf({ identities: "helo" }).requires, ["spf.check", "spf.helo"])
      assert.deepStrictEqual(Builtins.spf({ identities: "both" }).requires, ["spf.check"])
      for (const identities of ["mail", "helo", "both"] as const) {
        assert.deepStrictEqual(Builtins.spf({ identities }).decidesAt, ["mail", "rcpt", "data", "postq", "delivery"])
      }
    })
  })
})

describe("Builtins.dmarc", () => {
  const at = (result: string, policy: string): Rule.Context => context({ stage: "data", dmarc: { result, domain: "from.test", policy } })
  const rule = Builtins.dmarc()
  const refusal = Rule.deny(550, "5.7.1", "DMARC policy of the sender's domain refuses this message")

  const cases: ReadonlyArray<readonly [string, string, Rule.Verdict]> = [
    ["pass", "reject", Rule.next],
    ["none", "none", Rule.next],
    ["fail", "none", Rule.next],
    ["fail", "quarantine", Rule.because(Rule.quarantine("dmarc"), { dmarc: "fail", domain: "from.test", policy: "quarantine" })],
    ["fail", "reject", Rule.because(refusal, { dmarc: "fail", domain: "from.test", policy: "reject" })],
    ["temperror", "reject", Rule.because(Rule.tempfail(451, "4.7.1", "DMARC evaluation failed; try again later"), { dmarc: "temperror", domain: "from.test", policy: "reject" })],
    ["permerror", "reject", Rule.next]
  ]
  for (const [result, policy, verdict] of cases) {
    it(`${result} under p=${policy} → ${verdict._tag}`, () => {
      assert.deepStrictEqual(verdictOf(rule, at(result, policy)), verdict)
    })
  }

  it("the answers can be chosen; without a DMARC result (verification off) it goes on", () => {
    const strict = Builtins.dmarc({ quarantine: Rule.deny(550, "5.7.1", "Quarantine refused") })
    assert.deepStrictEqual(verdictOf(strict, at("fail", "quarantine")), Rule.because(Rule.deny(550, "5.7.1", "Quarantine refused"), { dmarc: "fail", domain: "from.test", policy: "quarantine" }))
    assert.deepStrictEqual(verdictOf(rule, context({ stage: "data" })), Rule.next)
    assert.strictEqual(rule.name, "dmarc")
  })
})

describe("Builtins.dkimVerify", () => {
  type Result = Builtins.DkimResult
  const signature = (domain: string, result: Result) => ({ domain, selector: "s1", result })
  const at = (dkim: ReadonlyArray<ReturnType<typeof signature>>, from = "Sender <sender@from.test>"): Rule.Context =>
    context({
      stage: "data",
      dkim,
      message: { headers: [{ name: "From", value: from }], header: (name) => (name.toLowerCase() === "from" ? from : undefined), body: undefined, content: undefined }
    })
  const rule = Builtins.dkimVerify()
  const deferred = Rule.tempfail(451, "4.7.5", "DKIM verification failed temporarily; try again later")

  const cases: ReadonlyArray<readonly [string, ReadonlyArray<ReturnType<typeof signature>>, Rule.Verdict]> = [
    ["unsigned", [], Rule.next],
    ["a passing signature", [signature("from.test", "pass")], Rule.next],
    ["a failing signature (as good as none, RFC 6376 6.1)", [signature("from.test", "fail")], Rule.next],
    ["a temporary error", [signature("from.test", "temperror")], Rule.because(deferred, { dkim: "temperror" })],
    ["a pass beside a temporary error: the pass counts", [signature("other.test", "temperror"), signature("from.test", "pass")], Rule.next]
  ]
  for (const [name, results, verdict] of cases) {
    it(`by default: ${name} → ${verdict._tag}`, () => {
      assert.deepStrictEqual(verdictOf(rule, at(results)), verdict)
    })
  }

  it("`on` chooses the verdict per best result", () => {
    const strict = Builtins.dkimVerify({ on: { fail: Rule.deny(550, "5.7.20", "Bad signature"), none: Rule.quarantine("unsigned") } })
    assert.deepStrictEqual(verdictOf(strict, at([signature("from.test", "fail")])), Rule.because(Rule.deny(550, "5.7.20", "Bad signature"), { dkim: "fail" }))
    assert.deepStrictEqual(verdictOf(strict, at([])), Rule.because(Rule.quarantine("unsigned"), { dkim: "none" }))
    assert.deepStrictEqual(verdictOf(strict, at([signature("from.test", "pass")])), Rule.next)
  })

  it("`required` domains must carry a passing signature of their own (550 5.7.20); other domains are left alone", () => {
    const bank = Builtins.dkimVerify({ required: ["Bank.test"] })
    const refused = Rule.deny(550, "5.7.20", "No passing DKIM signature of the sender's domain")
    assert.deepStrictEqual(verdictOf(bank, at([], "<alerts@bank.test>")), Rule.because(refused, { dkim: "none", required: "bank.test" }))
    assert.deepStrictEqual(verdictOf(bank, at([signature("mailer.test", "pass")], "alerts@bank.test")), Rule.because(refused, { dkim: "pass", required: "bank.test" }))
    assert.deepStrictEqual(verdictOf(bank, at([signature("bank.test", "pass")], "Bank <alerts@BANK.test>")), Rule.next)
    assert.deepStrictEqual(verdictOf(bank, at([], "someone@elsewhere.test")), Rule.next)
  })

  it("without DKIM results (verification off) it goes on; it says it needs dkim.verify and decides from data on", () => {
    assert.deepStrictEqual(verdictOf(rule, context({ stage: "data" })), Rule.next)
    assert.deepStrictEqual(rule.requires, ["dkim.verify"])
    assert.deepStrictEqual(rule.decidesAt, ["data", "postq", "delivery"])
  })
})

describe("Builtins.dmarc: trusted ARC sealers (RFC 8617 7.2)", () => {
  const at = (arc: Rule.Context["arc"]): Rule.Context =>
    context({
      stage: "data",
      dmarc: { result: "fail", domain: "from.test", policy: "reject" },
      arc,
      message: { headers: [], header: (name) => (name === "from" ? "CEO <ceo@from.test>" : undefined), body: undefined, content: undefined }
    })
  const rule = Builtins.dmarc({ trustedArcSealers: ["Lists.test"] })
  const refused = Rule.because(Rule.deny(550, "5.7.1", "DMARC policy of the sender's domain refuses this message"), { dmarc: "fail", domain: "from.test", policy: "reject" })
  const sealed = (sealer: string | undefined, dmarc: string | undefined, from: string | undefined, result = "pass") =>
    ({ result, instance: 1, sealer, recorded: { dmarc, from } })
  const cases: ReadonlyArray<readonly [string, Rule.Context["arc"], Rule.Verdict]> = [
    ["a passing chain, sealed by a trusted forwarder that recorded DMARC passing for the From domain, lets the failure through", sealed("lists.test", "pass", "from.test"), Rule.next],
    ["not when the forwarder recorded DMARC failing: it saw a forgery too (review finding)", sealed("lists.test", "fail", "from.test"), refused],
    ["not when it recorded no DMARC result", sealed("lists.test", undefined, "from.test"), refused],
    ["not when it recorded DMARC for another From domain", sealed("lists.test", "pass", "other.test"), refused],
    ["not for a failing chain", sealed("lists.test", "pass", "from.test", "fail"), refused],
    ["not for a chain sealed by anyone else", sealed("other.test", "pass", "from.test"), refused],
    ["not without a chain", { result: "none", instance: 0, sealer: undefined, recorded: undefined }, refused],
    ["not without an ARC result (verification off)", undefined, refused]
  ]
  for (const [name, arc, verdict] of cases) {
    it(name, () => {
      assert.deepStrictEqual(verdictOf(rule, at(arc)), verdict)
    })
  }
  it("without trusted sealers a passing chain changes nothing", () => {
    assert.deepStrictEqual(verdictOf(Builtins.dmarc(), at(sealed("lists.test", "pass", "from.test"))), refused)
  })
})

describe("Builtins.rateLimit: bounded memory (review finding)", () => {
  it("counts at most maxKeys keys; the oldest window is forgotten first", () => {
    const limited = Builtins.rateLimit({ limit: 1, per: "1d", maxKeys: 3, key: (c) => c.from ?? "" })
    const sender = (from: string, at: number) => verdictOf(limited, context({ at, from }))._tag
    assert.strictEqual(sender("a@x.test", 1), "Next")
    assert.strictEqual(sender("a@x.test", 2), "Tempfail")
    for (const [i, from] of ["b@x.test", "c@x.test", "d@x.test"].entries()) assert.strictEqual(sender(from, 3 + i), "Next")
    // a's window was the oldest of four: forgotten, so a starts again.
    assert.strictEqual(sender("a@x.test", 10), "Next")
    assert.strictEqual(sender("d@x.test", 11), "Tempfail")
  })
})

describe("Rule.quarantine", () => {
  it("holds the message in a named quarantine; names are lower-case letters, digits, '.', '_', '-'", () => {
    assert.deepStrictEqual(Rule.quarantine("spam"), { _tag: "Quarantine", name: "spam" })
    assert.strictEqual((thrown(() => Rule.quarantine("../etc")) as Error).message, "quarantine: \"../etc\" is not a quarantine name (a-z, 0-9, '.', '_', '-')")
  })

  it("is only for the data, postq and delivery stages: elsewhere the rule counts as failed (451 4.3.0)", () => {
    const rule = Rule.rule("hold", () => Rule.quarantine("spam"))
    const fallback = () => ({ verdict: Rule.accept, rule: undefined })
    for (const stage of ["connect", "helo", "auth", "mail", "rcpt"] as const) {
      assert.deepStrictEqual(Rule.evaluate([rule], context({ stage }), fallback, Duration.seconds(1)), {
        verdict: { _tag: "Tempfail", answer: Rule.ruleFailed },
        rule: "hold",
        error: "quarantine is only for the data, postq and delivery stages"
      })
    }
    for (const stage of ["data", "postq", "delivery"] as const) {
      assert.deepStrictEqual(Rule.evaluate([rule], context({ stage }), fallback, Duration.seconds(1)), { verdict: { _tag: "Quarantine", name: "spam" }, rule: "hold" })
    }
  })

  it("disconnect at postq or delivery counts as failed: after the 250 there is no connection to close", () => {
    const rule = Rule.rule("hang up", () => Rule.disconnect())
    const fallback = () => ({ verdict: Rule.accept, rule: undefined })
    for (const stage of ["postq", "delivery"] as const) {
      assert.deepStrictEqual(Rule.evaluate([rule], context({ stage }), fallback, Duration.seconds(1)), {
        verdict: { _tag: "Tempfail", answer: Rule.ruleFailed },
        rule: "hang up",
        error: `disconnect is only for the session's stages: at ${stage} there is no connection`
      })
    }
  })
})
