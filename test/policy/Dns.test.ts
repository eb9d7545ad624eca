import { assert, describe, it } from "@effect/vitest"
import * as Event from "../../src/log/Event.ts"
import * as Dns from "../../src/policy/Dns.ts"
import * as Spf from "../../src/policy/Spf.ts"
import { table } from "../support/DnsTable.ts"

const codeOf = async (promise: Promise<unknown>): Promise<string | undefined> => {
  try {
    await promise
    return undefined
  } catch (error) {
    const code: unknown = typeof error === "object" && error !== null ? Reflect.get(error, "code") : undefined
    return typeof code === "string" ? code : "no code"
  }
}


describe("Dns.recording", () => {
  it("passes answers and errors through, and records each", async () => {
    const recorded: Array<Dns.Answer> = []
    const resolve = Dns.recording(table({ "TXT a.test": [["v=spf1 -all"]], "A a.test": ["192.0.2.1"] }), (a) => recorded.push(a))
    assert.deepStrictEqual(await resolve("a.test", "TXT"), [["v=spf1 -all"]])
    assert.deepStrictEqual(await resolve("a.test", "A"), ["192.0.2.1"])
    assert.strictEqual(await codeOf(resolve("b.test", "TXT")), "ENOTFOUND")
    assert.deepStrictEqual(recorded, [
      { name: "a.test", type: "TXT", records: [["v=spf1 -all"]] },
      { name: "a.test", type: "A", records: ["192.0.2.1"] },
      { name: "b.test", type: "TXT", error: "ENOTFOUND" }
    ])
  })

  it("an error without a code is recorded as ESERVFAIL; records of other shapes as their JSON", async () => {
    const recorded: Array<Dns.Answer> = []
    const broken: Dns.Resolve = () => Promise.reject(new Error("boom"))
    assert.strictEqual(await codeOf(Dns.recording(broken, (a) => recorded.push(a))("x.test", "A")), "ESERVFAIL")
    assert.deepStrictEqual(Dns.asRecords([{ exchange: "mx.test", priority: 10 }]), [["{\"exchange\":\"mx.test\",\"priority\":10}"]])
    assert.deepStrictEqual(recorded, [{ name: "x.test", type: "A", error: "ESERVFAIL" }])
  })
})

describe("Dns.replaying", () => {
  const answers: ReadonlyArray<Dns.Answer> = [
    { name: "A.test", type: "TXT", records: [["v=spf1 -all"]] },
    { name: "gone.test", type: "TXT", error: "ENOTFOUND" }
  ]

  it("answers recorded questions (names in any case), recorded errors as errors, anything else as SERVFAIL", async () => {
    const resolve = Dns.replaying(answers)
    assert.deepStrictEqual(await resolve("a.test", "TXT"), [["v=spf1 -all"]])
    assert.strictEqual(await codeOf(resolve("gone.test", "TXT")), "ENOTFOUND")
    assert.strictEqual(await codeOf(resolve("a.test", "A")), "ESERVFAIL")
  })

  it("answersOf reads them from a session's DnsAnswered events", () => {
    const events = [
      Event.make("DnsAnswered", { session: "s", at: 1, name: "A.test", type: "TXT", records: [["v=spf1 -all"]] }),
      Event.make("CommandReceived", { session: "s", at: 2, line: "NOOP" }),
      Event.make("DnsAnswered", { session: "s", at: 3, name: "gone.test", type: "TXT", error: "ENOTFOUND" })
    ]
    assert.deepStrictEqual(Dns.answersOf(events), [
      { name: "A.test", type: "TXT", records: [["v=spf1 -all"]], error: undefined },
      { name: "gone.test", type: "TXT", records: undefined, error: "ENOTFOUND" }
    ])
  })
})

describe("Spf.check through recorded answers", () => {
  const check = (sender: string, ip: string, resolve: Dns.Resolve) =>
    Spf.check({ sender, ip, helo: "client.test", hostname: "mx.test", resolve, timeout: 5000 })

  it("the same result live and replayed from what the live check recorded", async () => {
    const recorded: Array<Dns.Answer> = []
    const live = Dns.recording(table({ "TXT fail.test": [["v=spf1 include:inc.test -all"]], "TXT inc.test": [["v=spf1 ip4:192.0.2.0/24 -all"]] }), (a) => recorded.push(a))
    const first = await check("a@fail.test", "198.51.100.7", live)
    assert.strictEqual(first.result, "fail")
    const again = await check("a@fail.test", "198.51.100.7", Dns.replaying(recorded))
    assert.deepStrictEqual(again, first)
    const inside = await check("a@fail.test", "192.0.2.9", Dns.replaying(recorded))
    assert.strictEqual(inside.result, "pass")
  })

  it("results by record: pass, softfail, neutral, none, permerror; a DNS failure is temperror", async () => {
    const resolve = table({
      "TXT soft.test": [["v=spf1 ~all"]],
      "TXT neutral.test": [["v=spf1 ?all"]],
      "TXT broken.test": [["v=spf1 ip4:not-an-ip -all"]]
    })
    assert.strictEqual((await check("a@soft.test", "192.0.2.1", resolve)).result, "softfail")
    assert.strictEqual((await check("a@neutral.test", "192.0.2.1", resolve)).result, "neutral")
    assert.strictEqual((await check("a@nothing.test", "192.0.2.1", resolve)).result, "none")
    assert.strictEqual((await check("a@broken.test", "192.0.2.1", resolve)).result, "permerror")
    const failing: Dns.Resolve = () => Promise.reject(Object.assign(new Error("timeout"), { code: "ETIMEOUT" }))
    assert.strictEqual((await check("a@slow.test", "192.0.2.1", failing)).result, "temperror")
  })

  it("the Received-SPF header names the result, the client and the sender", async () => {
    const outcome = await check("a@soft.test", "192.0.2.1", table({ "TXT soft.test": [["v=spf1 ~all"]] }))
    // Folded (CRLF and a space) where it is long; unfolded it reads as one field.
    const unfolded = outcome.header.replace(/\r\n[ \t]+/g, " ")
    assert.match(unfolded, /^Received-SPF: softfail \(.*\) client-ip=192\.0\.2\.1; envelope-from="?a@soft\.test"?;/)
    assert.notMatch(outcome.header, /\r?\n$/)
  })
})

describe("MX answers (review: they reached mailauth as JSON strings, and `mx` never matched)", () => {
  const zone = table({
    "TXT mx.test": [["v=spf1 mx -all"]],
    "MX mx.test": [{ exchange: "mail.mx.test", priority: 10 }],
    "A mail.mx.test": ["192.0.2.10"]
  })
  const check = (ip: string, resolve: Dns.Resolve) =>
    Spf.check({ sender: "a@mx.test", ip, helo: "client.test", hostname: "mx.test", resolve, timeout: 5000 })

  it("the mx mechanism matches the domain's MX host, live and replayed from the record", async () => {
    const recorded: Array<Dns.Answer> = []
    assert.strictEqual((await check("192.0.2.10", Dns.recording(zone, (a) => recorded.push(a)))).result, "pass")
    assert.deepStrictEqual(recorded.find((a) => a.type === "MX")?.records, [["{\"exchange\":\"mail.mx.test\",\"priority\":10}"]])
    assert.strictEqual((await check("192.0.2.10", Dns.replaying(recorded))).result, "pass")
    assert.strictEqual((await check("192.0.2.11", Dns.replaying(recorded))).result, "fail")
  })
})
