/**
 * The queue's policy stages: postq (once per message, after queueing, before its first
 * delivery) and delivery (each recipient's attempt). Each verdict's effect on the spool, the
 * Maildirs and the log; the facts rules see (the session's recorded origin, header fields and
 * body start read from the spool); and recovery, which applies a recorded postq decision
 * instead of asking again.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Path from "node:path"
import { Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import type * as Event from "../../src/log/Event.ts"
import { makeMemory } from "../../src/log/EventLog.ts"
import * as Policy from "../../src/policy/Policy.ts"
import * as Rule from "../../src/policy/Rule.ts"
import * as QueueState from "../../src/queue/QueueState.ts"
import { accept, list, mailFiles, ofTag, optionsFor, readFile, start, tempDirectory } from "./QueueFixtures.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const message = (body: string) =>
  encoder.encode(`Received: from client.test\r\nFrom: sender@remote.test\r\nSubject: quarterly report\r\n\r\n${body}`)

const origin: Event.MessageOrigin = {
  peer: { address: "198.51.100.7", port: 40123 },
  local: { address: "127.0.0.1", port: 25 },
  role: "smtp",
  helo: "client.test",
  spf: { result: "pass", domain: "remote.test" }
}

const policyWith = (rules: Policy.RuleSet["rules"], shadow?: Policy.RuleSet["rules"]) =>
  Policy.make(
    { ...Policy.defaultRuleSet, rules, ruleTimeout: Duration.seconds(1) },
    shadow === undefined ? undefined : { ...Policy.defaultRuleSet, rules: shadow }
  )

/** Every file under a quarantine's recipient Maildir. */
const quarantined = (root: string, name: string, recipient: string) =>
  Effect.gen(function*() {
    const box = Path.join(root, "quarantine", name, recipient, "new")
    return yield* Effect.forEach(yield* list(box), (file) => readFile(Path.join(box, file)))
  })

describe("Queue: postq", () => {
  it.live("rules see the recorded origin, the envelope, the header fields and the body start, read from the spool", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const sink: Array<Event.Event> = []
      const seen: Array<Rule.Context> = []
      const policy = policyWith({ postq: [Rule.rule("look", (context) => (seen.push(context), Rule.next))] })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
      const { queueId } = yield* accept(queue, message("Please find the figures attached.\r\n"), ["alice@mail.test", "bob@mail.test"], origin)
      yield* queue.drain
      assert.strictEqual(seen.length, 1, "postq is asked once per message, not per recipient")
      const [context] = seen
      assert.strictEqual(context?.stage, "postq")
      assert.strictEqual(context?.queueId, queueId)
      assert.strictEqual(context?.session, "session-1")
      assert.deepStrictEqual(context?.client, { address: "198.51.100.7", ip: "198.51.100.7", port: 40123, name: undefined })
      assert.strictEqual(context?.helo, "client.test")
      assert.deepStrictEqual(context?.spf, { result: "pass", domain: "remote.test", comment: undefined })
      assert.isFalse(context?.isSecured)
      assert.strictEqual(context?.from, "sender@remote.test")
      assert.deepStrictEqual(context?.recipients, ["alice@mail.test", "bob@mail.test"])
      assert.strictEqual(context?.message?.header("subject"), "quarterly report")
      assert.strictEqual(context?.message?.body?.text(), "Please find the figures attached.\r\n")
      assert.isFalse(context?.message?.body?.truncated)
      assert.deepStrictEqual(
        ofTag(sink, "PolicyDecided").map((e) => [e.stage, e.verdict, e.queueId, e.session]),
        [["postq", "accept", queueId, "session-1"]]
      )
      assert.strictEqual((yield* mailFiles(root, "mail.test", "alice")).length, 1)
      assert.strictEqual((yield* mailFiles(root, "mail.test", "bob")).length, 1)
    }))

  it.live("the body rules see stops at bodyLimit and says it goes on", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const seen: Array<Rule.Context> = []
      const policy = Policy.make({
        ...Policy.defaultRuleSet,
        bodyLimit: 100,
        rules: { postq: [Rule.rule("look", (context) => (seen.push(context), Rule.next))] }
      })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory([]))
      yield* accept(queue, message("x".repeat(5000)), ["alice@mail.test"], origin)
      yield* queue.drain
      assert.strictEqual(seen[0]?.message?.body?.bytes.length, 100)
      assert.isTrue(seen[0]?.message?.body?.truncated)
    }))

  it.live("deny: no recipient gets the message; each fails for good with the rule's reply, and the message completes", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const sink: Array<Event.Event> = []
      const policy = policyWith({
        postq: [Rule.rule("virus scan", (c) => c.message?.body?.text().includes("EICAR") === true ? Rule.deny(554, "5.7.0", "Virus found") : Rule.next)]
      })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
      yield* accept(queue, message("X5O!P%@AP EICAR test\r\n"), ["alice@mail.test", "bob@mail.test"], origin)
      yield* queue.drain
      assert.deepStrictEqual(
        ofTag(sink, "DeliveryFailed").map((e) => [e.recipient, e.permanent, e.reason]),
        [
          ["alice@mail.test", true, "554 5.7.0 Virus found (postq rule 'virus scan')"],
          ["bob@mail.test", true, "554 5.7.0 Virus found (postq rule 'virus scan')"]
        ]
      )
      assert.deepStrictEqual(yield* mailFiles(root, "mail.test", "alice"), [])
      assert.deepStrictEqual(sink.map((e) => e._tag).slice(-4), ["PolicyDecided", "DeliveryFailed", "DeliveryFailed", "MessageCompleted"])
      assert.strictEqual(yield* queue.pending(), 0)
    }))

  it.live("quarantine: every recipient's copy goes to the quarantine's Maildir, none to the recipient", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const sink: Array<Event.Event> = []
      const policy = policyWith({ postq: [Rule.rule("hold reports", (c) => c.message?.header("Subject")?.includes("report") === true ? Rule.quarantine("review") : Rule.next)] })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
      const bytes = message("figures\r\n")
      yield* accept(queue, bytes, ["alice@mail.test"], origin)
      yield* queue.drain
      assert.deepStrictEqual(yield* mailFiles(root, "mail.test", "alice"), [])
      assert.deepStrictEqual(yield* quarantined(root, "review", "alice@mail.test"), [bytes])
      assert.match(ofTag(sink, "MessageDelivered")[0]?.destination ?? "", /quarantine\/review\/alice@mail\.test\/new\//)
    }))

  it.live("header fields added at postq go above the delivered message", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const policy = policyWith({ postq: [Rule.rule("score", () => Rule.withHeaders(Rule.next, { "X-Spam-Score": "1.5" }))] })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory([]))
      const bytes = message("hello\r\n")
      yield* accept(queue, bytes, ["alice@mail.test"], origin)
      yield* queue.drain
      const [file] = yield* mailFiles(root, "mail.test", "alice")
      assert.strictEqual(decoder.decode(file?.bytes), `X-Spam-Score: 1.5\r\n${decoder.decode(bytes)}`)
    }))

  it.live("the decision is durable before any delivery it governs; delivery rules see the fields postq added (review findings)", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const durable: Array<Event.Event> = []
      const sink: Array<Event.Event> = []
      const log = { ...makeMemory(sink), appendDurable: (event: Event.Event) => Effect.sync(() => void (sink.push(event), durable.push(event))) }
      const seen: Array<string | undefined> = []
      const policy = policyWith({
        postq: [Rule.rule("score", () => Rule.withHeaders(Rule.next, { "X-Spam-Score": "9.9" }))],
        delivery: [Rule.rule("look", (c) => (seen.push(c.message?.header("x-spam-score")), Rule.next))]
      })
      const queue = yield* start({ ...optionsFor(root), policy }, log)
      yield* accept(queue, message("hi\r\n"), ["alice@mail.test"], origin)
      yield* queue.drain
      assert.deepStrictEqual(durable.filter((e) => e._tag === "PolicyDecided").map((e) => e._tag === "PolicyDecided" && e.stage), ["postq"])
      const decidedAt = sink.findIndex((e) => e._tag === "PolicyDecided" && e.stage === "postq")
      const deliveredAt = sink.findIndex((e) => e._tag === "MessageDelivered")
      assert.isBelow(decidedAt, deliveredAt)
      assert.deepStrictEqual(seen, ["9.9"])
    }))

  it.live("a message whose delivery has begun is not asked about at postq (rules added by a reload come too late for it)", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      // A first run without postq rules delivered alice and deferred far@remote.test.
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const sink: Array<Event.Event> = []
        const queue = yield* start(optionsFor(root), makeMemory(sink))
        yield* accept(queue, message("hi\r\n"), ["alice@mail.test", "far@remote.test"], origin)
        yield* queue.drain
        return sink
      }))
      assert.strictEqual(ofTag(first, "MessageDelivered").length, 1)
      let asked = 0
      const policy = policyWith({ postq: [Rule.rule("late", () => (asked++, Rule.quarantine("late")))] })
      const sink: Array<Event.Event> = []
      const queue = yield* start({ ...optionsFor(root, first), policy }, makeMemory(sink))
      // The deferred recipient comes due a second after the first attempt.
      yield* Effect.sleep(1100)
      yield* queue.drain
      assert.deepStrictEqual(ofTag(sink, "DeliveryFailed").map((e) => e.recipient), ["far@remote.test"], "attempted again")
      assert.strictEqual(asked, 0)
      assert.deepStrictEqual(yield* quarantined(root, "late", "far@remote.test"), [])
    }))

  it.effect("tempfail: nothing is delivered; the stage is asked again after the retry delay", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const sink: Array<Event.Event> = []
      let asked = 0
      const policy = policyWith({
        postq: [Rule.rule("scanner", () => ++asked === 1 ? Rule.tempfail(451, "4.7.1", "Scanner busy") : Rule.next)]
      })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
      yield* accept(queue, message("hi\r\n"), ["alice@mail.test"], origin)
      yield* queue.drain
      assert.strictEqual(asked, 1)
      assert.deepStrictEqual(ofTag(sink, "MessageDelivered"), [])
      yield* TestClock.adjust(999)
      yield* queue.drain
      assert.strictEqual(asked, 1)
      yield* TestClock.adjust(1)
      yield* queue.drain
      assert.strictEqual(asked, 2)
      assert.deepStrictEqual(ofTag(sink, "PolicyDecided").map((e) => e.verdict), ["tempfail", "accept"])
      assert.strictEqual(ofTag(sink, "MessageDelivered").length, 1)
    }))

  it.live("a rule that throws holds the message (451 4.3.0 recorded with the error), never a silent pass", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const sink: Array<Event.Event> = []
      const policy = policyWith({ postq: [Rule.rule("broken", () => { throw new Error("no scanner") })] })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
      yield* accept(queue, message("hi\r\n"), ["alice@mail.test"], origin)
      yield* queue.drain
      const [decided] = ofTag(sink, "PolicyDecided")
      assert.deepStrictEqual([decided?.verdict, decided?.code, decided?.enhanced, decided?.error], ["tempfail", 451, "4.3.0", "threw: no scanner"])
      assert.deepStrictEqual(ofTag(sink, "MessageDelivered"), [])
      assert.strictEqual(yield* queue.pending(), 1)
    }))

  it.live("without postq or delivery rules nothing is asked and nothing is recorded", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const sink: Array<Event.Event> = []
      const policy = policyWith({ rcpt: [Rule.rule("other stage", () => Rule.next)] })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
      yield* accept(queue, message("hi\r\n"), ["alice@mail.test"])
      yield* queue.drain
      assert.deepStrictEqual(sink.map((e) => e._tag), ["MessageQueued", "MessageDelivered", "MessageCompleted"])
    }))

  it.live("shadow rules at postq are recorded beside the live decision and never enforced", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-postq")
      const sink: Array<Event.Event> = []
      const policy = policyWith({}, { postq: [Rule.rule("stricter", () => Rule.deny(550, "5.7.1", "Would refuse"))] })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
      const { queueId } = yield* accept(queue, message("hi\r\n"), ["alice@mail.test"], origin)
      yield* queue.drain
      assert.deepStrictEqual(
        ofTag(sink, "ShadowDecided").map((e) => [e.stage, e.verdict, e.rule, e.queueId]),
        [["postq", "deny", "stricter", queueId]]
      )
      assert.deepStrictEqual(ofTag(sink, "PolicyDecided").map((e) => [e.stage, e.verdict]), [["postq", "accept"]])
      assert.strictEqual((yield* mailFiles(root, "mail.test", "alice")).length, 1)
    }))
})

describe("Queue: delivery", () => {
  it.effect("each recipient's attempt is decided: deny fails it for good, tempfail defers it, quarantine holds its copy", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-delivery")
      const sink: Array<Event.Event> = []
      const seen: Array<readonly [string | undefined, number | undefined, boolean]> = []
      const policy = policyWith({
        delivery: [
          Rule.rule("by recipient", (c) => {
            seen.push([c.recipient, c.attempts, c.recipientIsLocal])
            if (c.recipient === "denied@mail.test") return Rule.deny(550, "5.7.1", "Mailbox closed to outside mail")
            if (c.recipient === "later@mail.test" && c.attempts === 0) return Rule.tempfail(450, "4.2.1", "Mailbox busy")
            if (c.recipient === "held@mail.test") return Rule.quarantine("held")
            return Rule.next
          })
        ]
      })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
      const bytes = message("hi\r\n")
      const { queueId } = yield* accept(queue, bytes, ["ok@mail.test", "denied@mail.test", "later@mail.test", "held@mail.test"], origin)
      yield* queue.drain
      assert.deepStrictEqual(seen, [
        ["ok@mail.test", 0, true],
        ["denied@mail.test", 0, true],
        ["later@mail.test", 0, true],
        ["held@mail.test", 0, true]
      ])
      assert.deepStrictEqual(
        ofTag(sink, "PolicyDecided").map((e) => [e.stage, e.recipient, e.verdict, e.queueId]),
        [
          ["delivery", "ok@mail.test", "accept", queueId],
          ["delivery", "denied@mail.test", "deny", queueId],
          ["delivery", "later@mail.test", "tempfail", queueId],
          ["delivery", "held@mail.test", "quarantine", queueId]
        ]
      )
      assert.deepStrictEqual(
        ofTag(sink, "DeliveryFailed").map((e) => [e.recipient, e.permanent, e.reason]),
        [
          ["denied@mail.test", true, "550 5.7.1 Mailbox closed to outside mail (delivery rule 'by recipient')"],
          ["later@mail.test", false, "450 4.2.1 Mailbox busy (delivery rule 'by recipient')"]
        ]
      )
      assert.strictEqual((yield* mailFiles(root, "mail.test", "ok")).length, 1)
      assert.deepStrictEqual(yield* mailFiles(root, "mail.test", "denied"), [])
      assert.deepStrictEqual(yield* mailFiles(root, "mail.test", "held"), [])
      assert.deepStrictEqual(yield* quarantined(root, "held", "held@mail.test"), [bytes])

      yield* TestClock.adjust(1000)
      yield* queue.drain
      assert.deepStrictEqual(seen.slice(4), [["later@mail.test", 1, true]])
      assert.strictEqual((yield* mailFiles(root, "mail.test", "later")).length, 1)
      assert.strictEqual(yield* queue.pending(), 0)
    }))

  it.live("a message held at data or postq is not asked about at delivery", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-delivery")
      let asked = 0
      const policy = policyWith({
        postq: [Rule.rule("hold", () => Rule.quarantine("review"))],
        delivery: [Rule.rule("count", () => (asked++, Rule.next))]
      })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory([]))
      yield* accept(queue, message("hi\r\n"), ["alice@mail.test"], origin)
      yield* queue.drain
      assert.strictEqual(asked, 0)
      assert.strictEqual((yield* quarantined(root, "review", "alice@mail.test")).length, 1)
    }))
})

describe("Queue: recovery and the postq decision", () => {
  /** A queue's events from a first run that stopped after `keep` of them. */
  const firstRun = (root: string, policy: Policy.PolicyShape, stopAfter: (events: ReadonlyArray<Event.Event>) => number) =>
    Effect.scoped(Effect.gen(function*() {
      const sink: Array<Event.Event> = []
      const queue = yield* start({ ...optionsFor(root), policy, deliveryConcurrency: 1 }, makeMemory(sink))
      yield* accept(queue, message("hi\r\n"), ["alice@mail.test", "bob@mail.test"], origin)
      yield* queue.drain
      return sink.slice(0, stopAfter(sink))
    }))

  it.live("a recorded deny is applied after a restart without asking the rules again", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-recovery")
      const deny = policyWith({ postq: [Rule.rule("deny", () => Rule.deny(550, "5.7.1", "No"))] })
      // The crash came after the decision, before any recipient's failure was recorded.
      const recovered = yield* firstRun(root, deny, (events) => events.findIndex((e) => e._tag === "PolicyDecided") + 1)
      assert.strictEqual(QueueState.fromEvents(recovered).values().next().value?.postq?.verdict, "deny")
      let asked = 0
      const counting = policyWith({ postq: [Rule.rule("count", () => (asked++, Rule.next))] })
      const sink: Array<Event.Event> = []
      const queue = yield* start({ ...optionsFor(root, recovered), policy: counting }, makeMemory(sink))
      yield* queue.drain
      assert.strictEqual(asked, 0)
      assert.deepStrictEqual(ofTag(sink, "DeliveryFailed").map((e) => [e.recipient, e.permanent]), [["alice@mail.test", true], ["bob@mail.test", true]])
      assert.deepStrictEqual(yield* mailFiles(root, "mail.test", "alice"), [])
    }))

  it.live("a recorded quarantine at delivery is followed after a restart, without asking again: the copy never lands in the mailbox too (review finding)", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-recovery")
      const hold = policyWith({ delivery: [Rule.rule("hold alice", (c) => (c.recipient === "alice@mail.test" ? Rule.quarantine("held") : Rule.next))] })
      // The crash came after alice's decision was on disk, before her copy's delivery was logged.
      const recovered = yield* firstRun(root, hold, (events) =>
        events.findIndex((e) => e._tag === "PolicyDecided" && e.recipient === "alice@mail.test") + 1)
      let asked = 0
      const open = policyWith({ delivery: [Rule.rule("open", () => (asked++, Rule.next))] })
      const sink: Array<Event.Event> = []
      const queue = yield* start({ ...optionsFor(root, recovered), policy: open }, makeMemory(sink))
      yield* queue.drain
      assert.deepStrictEqual(yield* mailFiles(root, "mail.test", "alice"), [])
      assert.strictEqual((yield* quarantined(root, "held", "alice@mail.test")).length, 1)
      // Only bob, whose delivery was never decided, was asked.
      assert.strictEqual(asked, 1)
      assert.strictEqual((yield* mailFiles(root, "mail.test", "bob")).length, 1)
    }))

  it.live("a message queued but not yet decided is asked after a restart, with the origin recorded at queueing", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue-recovery")
      const slow = policyWith({ postq: [Rule.rule("never reached", () => Rule.next)] })
      const recovered = yield* firstRun(root, slow, (events) => events.findIndex((e) => e._tag === "MessageQueued") + 1)
      const seen: Array<Rule.Context> = []
      const policy = policyWith({ postq: [Rule.rule("look", (c) => (seen.push(c), Rule.next))] })
      const queue = yield* start({ ...optionsFor(root, recovered), policy }, makeMemory([]))
      yield* queue.drain
      assert.strictEqual(seen.length, 1)
      assert.strictEqual(seen[0]?.client.address, "198.51.100.7")
      assert.strictEqual(seen[0]?.message?.header("subject"), "quarterly report")
      assert.strictEqual((yield* mailFiles(root, "mail.test", "bob")).length, 1)
    }))
})
