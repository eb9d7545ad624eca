import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect, Fiber, Latch, Layer } from "effect"
import { TestClock } from "effect/testing"
import * as Event from "../../src/log/Event.ts"
import { EventLog, type EventLogShape, LogError, makeMemory } from "../../src/log/EventLog.ts"
import * as LogRecord from "../../src/log/LogRecord.ts"
import * as Maildir from "../../src/queue/Maildir.ts"
import * as Queue from "../../src/queue/Queue.ts"
import * as QueueId from "../../src/queue/QueueId.ts"
import * as Spool from "../../src/queue/Spool.ts"
import {
  accept,
  concat,
  content,
  envelope,
  hostname,
  list,
  mailbox,
  mailFiles,
  ofTag,
  optionsFor,
  partition,
  readFile,
  sha256,
  start,
  tempDirectory,
  truncate
} from "./QueueFixtures.ts"

describe("Queue", () => {
  it.live("commit makes the content and MessageQueued durable before it returns, then delivers to Maildir", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue")
      const sink: Array<Event.Event> = []
      const durable: Array<Event.Event> = []
      const gate = Latch.makeUnsafe(false)
      const log: EventLogShape = {
        ...makeMemory(sink),
        appendDurable: (event) =>
          Effect.andThen(gate.await, Effect.sync(() => {
            sink.push(event)
            durable.push(event)
          }))
      }
      const queue = yield* start(optionsFor(root), log)
      const bytes = content(3000, 1)
      let returned = false
      const fiber = yield* Effect.forkChild(
        Effect.tap(accept(queue, bytes, ["Alice@Mail.Test"]), () => Effect.sync(() => (returned = true)))
      )
      yield* Effect.sleep(50)
      assert.isFalse(returned, "commit returned before MessageQueued was durable")
      assert.deepStrictEqual(ofTag(sink, "MessageQueued"), [])
      // The content is already in the spool, framed and checked.
      const segments = (yield* list(Path.join(root, "spool", partition))).filter((f) => f.endsWith(".spool"))
      const spooled = concat(
        yield* Effect.forEach(segments, (f) => readFile(Path.join(root, "spool", partition, f)))
      )
      assert.isAbove(spooled.length, bytes.length)

      yield* gate.open
      const { queueId } = yield* Fiber.join(fiber)
      const [queued] = ofTag(durable, "MessageQueued")
      assert.strictEqual(queued?.queueId, queueId)
      assert.strictEqual(queued?.size, bytes.length)
      assert.strictEqual(queued?.digest, sha256(bytes))
      assert.deepStrictEqual(queued?.envelope.to, ["Alice@Mail.Test"])
      const file = Path.join(root, "spool", partition, `${queued?.spool.segment}.spool`)
      const records = LogRecord.scanAll(yield* readFile(file)).records
      const stored = concat(
        (queued?.spool.extents ?? []).map((x) => records.find((r) => r.offset === x.offset)?.payload ?? new Uint8Array())
      )
      assert.deepStrictEqual(stored, bytes)

      yield* queue.drain
      const name = Maildir.messageName({ at: queued?.at ?? 0, queueId, index: 0, hostname })
      const path = Path.join(mailbox(root, "mail.test", "alice"), "new", name)
      assert.deepStrictEqual(yield* mailFiles(root, "mail.test", "alice"), [{ path, bytes }])
      assert.deepStrictEqual(sink.map((e) => e._tag), ["MessageQueued", "MessageDelivered", "MessageCompleted"])
      assert.strictEqual(ofTag(sink, "MessageDelivered")[0]?.destination, path)
      assert.strictEqual(ofTag(sink, "MessageDelivered")[0]?.recipient, "Alice@Mail.Test")
      assert.include(durable.map((e) => e._tag), "MessageCompleted")
      assert.strictEqual(yield* queue.pending(), 0)
    }))

  it.live("works as a layer; a discard domain completes without a file; released segments are deleted", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue")
      const sink: Array<Event.Event> = []
      const layer = Queue.Queue.layer(optionsFor(root)).pipe(Layer.provide(EventLog.layerMemory(sink)))
      yield* Effect.gen(function*() {
        const queue = yield* Queue.Queue
        const first = yield* accept(queue, content(100, 1), ["x@void.test"])
        yield* accept(queue, content(100, 2), ["y@VOID.test", "z@mail.test"])
        yield* queue.drain
        const delivered = ofTag(sink, "MessageDelivered")
        assert.deepStrictEqual(
          delivered.filter((e) => e.queueId === first.queueId).map((e) => e.destination),
          ["discard"]
        )
        assert.deepStrictEqual(delivered.map((e) => e.recipient).sort(), ["x@void.test", "y@VOID.test", "z@mail.test"])
        assert.strictEqual(ofTag(sink, "MessageCompleted").length, 2)
        assert.deepStrictEqual(yield* list(Path.join(root, "mail")), ["mail.test"])
        // segmentSize 1: each message had its own segment; only the current one is left.
        assert.strictEqual((yield* list(Path.join(root, "spool", partition))).length, 1)
      }).pipe(Effect.provide(layer))
    }))

  it.effect("unknown domains are deferred with exponential backoff; unknown users fail permanently", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue")
      const sink: Array<Event.Event> = []
      const queue = yield* start(optionsFor(root), makeMemory(sink))
      const bytes = content(500, 4)
      const { queueId } = yield* accept(queue, bytes, [
        "alice@mail.test",
        "far@remote.test",
        "nobody@list.test",
        "Only@list.test"
      ])
      yield* queue.drain
      const failures = () => ofTag(sink, "DeliveryFailed")
      assert.deepStrictEqual(
        failures().map((e) => [e.recipient, e.permanent, e.retryAt]),
        [["far@remote.test", false, 1000], ["nobody@list.test", true, undefined]]
      )
      assert.match(failures()[1]?.reason ?? "", /^5\.1\.1/)
      assert.deepStrictEqual(ofTag(sink, "MessageDelivered").map((e) => e.recipient), [
        "alice@mail.test",
        "Only@list.test"
      ])
      assert.strictEqual(yield* queue.pending(), 1)

      yield* TestClock.adjust(999)
      yield* queue.drain
      assert.strictEqual(failures().length, 2)
      yield* TestClock.adjust(1)
      yield* queue.drain
      assert.deepStrictEqual(failures().slice(2).map((e) => [e.recipient, e.at, e.retryAt]), [
        ["far@remote.test", 1000, 3000]
      ])
      yield* TestClock.adjust(2000)
      yield* queue.drain
      assert.deepStrictEqual(failures().slice(3).map((e) => e.retryAt), [7000])
      assert.strictEqual(ofTag(sink, "MessageDelivered").length, 2)
      assert.strictEqual((yield* mailFiles(root, "mail.test", "alice")).length, 1)
      assert.deepStrictEqual(ofTag(sink, "MessageCompleted"), [])
      assert.strictEqual(ofTag(sink, "MessageQueued")[0]?.queueId, queueId)
    }))

  it.live("a transaction commits once; an aborted one cannot commit", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue")
      const sink: Array<Event.Event> = []
      const queue = yield* start(optionsFor(root), makeMemory(sink))
      const txn = yield* queue.begin()
      yield* txn.write(content(10, 1))
      yield* queue.commit(txn, envelope(["a@void.test"]), "s")
      const twice = yield* Effect.result(queue.commit(txn, envelope(["a@void.test"]), "s"))
      assert.strictEqual(twice._tag === "Failure" ? twice.failure.reason : "none", "closed")
      const aborted = yield* queue.begin()
      yield* aborted.abort
      const after = yield* Effect.result(queue.commit(aborted, envelope(["a@void.test"]), "s"))
      assert.strictEqual(after._tag === "Failure" ? after.failure.reason : "none", "closed")
      yield* queue.drain
      assert.strictEqual(ofTag(sink, "MessageQueued").length, 1)
    }))

  it.live("when MessageQueued cannot be made durable, commit fails and nothing is delivered", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue")
      const sink: Array<Event.Event> = []
      const log: EventLogShape = {
        ...makeMemory(sink),
        appendDurable: () => Effect.fail(new LogError({ operation: "fsync", message: "disk on fire" }))
      }
      const queue = yield* start(optionsFor(root), log)
      const result = yield* Effect.result(accept(queue, content(10, 1), ["a@mail.test"]))
      assert.strictEqual(result._tag === "Failure" ? result.failure.reason : "none", "log")
      yield* queue.drain
      assert.strictEqual(yield* queue.pending(), 0)
      assert.deepStrictEqual(yield* list(Path.join(root, "mail")), [])
    }))

  it.live("recovery redelivers every pending recipient exactly once and sweeps unreferenced segments", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue")
      const options = optionsFor(root)
      const bodies = { A: content(5000, 10), B: content(700, 11), C: content(300, 12) }
      const stored = yield* Effect.scoped(Effect.gen(function*() {
        const spool = yield* Spool.make({ directory: options.spoolDirectory, partition, segmentSize: 1 })
        const put = (bytes: Uint8Array) =>
          Effect.flatMap(spool.begin, (txn) => Effect.andThen(txn.write(bytes), txn.commit))
        return { A: yield* put(bodies.A), B: yield* put(bodies.B), C: yield* put(bodies.C) }
      }))
      const at = 1_700_000_000_000
      const ids = {
        A: QueueId.format({ time: at, counter: 0, partition }),
        B: QueueId.format({ time: at, counter: 1, partition }),
        // Far in the future: ids issued after the restart must still sort after it.
        C: QueueId.format({ time: 9_000_000_000_000, counter: 0, partition })
      }
      const queued = (key: "A" | "B" | "C", to: ReadonlyArray<string>) =>
        Event.make("MessageQueued", {
          session: `s-${key}`,
          at,
          queueId: ids[key],
          envelope: envelope(to),
          size: stored[key].size,
          digest: stored[key].digest,
          spool: stored[key].reference
        })
      const nameFor = (key: "A" | "B", index: number) =>
        Maildir.messageName({ at, queueId: ids[key], index, hostname })
      const preDeliver = (user: string, name: string) =>
        Maildir.deliver({ root: options.maildirRoot, domain: "mail.test", user, name, content: [bodies.A] })

      // A: a delivered and logged; b delivered, crash before its event; e delivered and already
      // moved to cur/ by a reader, no event; c not attempted.
      yield* preDeliver("a", nameFor("A", 0))
      yield* preDeliver("b", nameFor("A", 1))
      const e = yield* preDeliver("e", nameFor("A", 3))
      const eCur = Path.join(mailbox(root, "mail.test", "e"), "cur", `${nameFor("A", 3)}:2,S`)
      yield* Effect.promise(() => Fs.rename(e.path, eCur))
      const recovered: Array<Event.Event> = [
        Event.make("SessionOpened", {
          session: "s-A",
          at,
          settingsDigest: "x",
          role: "smtp",
          peer: { address: "127.0.0.1", port: 1 },
          local: { address: "127.0.0.1", port: 25 },
          admission: "ok"
        }),
        queued("A", ["a@mail.test", "b@mail.test", "c@mail.test", "e@mail.test"]),
        queued("B", ["d@mail.test", "v@void.test"]),
        queued("C", ["f@mail.test"]),
        Event.make("MessageDelivered", {
          at,
          queueId: ids.A,
          recipient: "a@mail.test",
          destination: Path.join(mailbox(root, "mail.test", "a"), "new", nameFor("A", 0))
        }),
        Event.make("DeliveryFailed", {
          at,
          queueId: ids.B,
          recipient: "d@mail.test",
          permanent: false,
          reason: "disk full",
          retryAt: at + 1000
        }),
        Event.make("MessageDelivered", { at, queueId: ids.C, recipient: "f@mail.test", destination: "elsewhere" }),
        Event.make("MessageCompleted", { at, queueId: ids.C })
      ]

      const sink: Array<Event.Event> = []
      yield* Effect.scoped(Effect.gen(function*() {
        const queue = yield* start(optionsFor(root, recovered), makeMemory(sink))
        assert.strictEqual(yield* queue.pending(), 2)
        yield* queue.drain
        assert.strictEqual(yield* queue.pending(), 0)
        const next = yield* queue.begin()
        assert.isTrue(next.queueId > ids.C)
        yield* next.abort
      }))

      for (const [user, body] of [["a", bodies.A], ["b", bodies.A], ["c", bodies.A], ["e", bodies.A], ["d", bodies.B]] as const) {
        const files = yield* mailFiles(root, "mail.test", user)
        assert.strictEqual(files.length, 1, `${user} has ${files.length} copies`)
        assert.deepStrictEqual(files[0]?.bytes, body, `${user}'s copy differs`)
      }
      assert.deepStrictEqual(yield* mailFiles(root, "mail.test", "f"), [])
      const delivered = ofTag(sink, "MessageDelivered").map((x) => [x.queueId, x.recipient, x.destination] as const)
      assert.deepStrictEqual(delivered.filter(([id]) => id === ids.A).sort(), [
        [ids.A, "b@mail.test", Path.join(mailbox(root, "mail.test", "b"), "new", nameFor("A", 1))],
        [ids.A, "c@mail.test", Path.join(mailbox(root, "mail.test", "c"), "new", nameFor("A", 2))],
        [ids.A, "e@mail.test", eCur]
      ])
      assert.deepStrictEqual(delivered.filter(([id]) => id === ids.B).map(([, r]) => r).sort(), [
        "d@mail.test",
        "v@void.test"
      ])
      assert.deepStrictEqual(ofTag(sink, "MessageCompleted").map((x) => x.queueId).sort(), [ids.A, ids.B])
      assert.deepStrictEqual(ofTag(sink, "DeliveryFailed"), [])
      // C's segment went at start; A's and B's once they completed; the current one remains.
      const left = yield* list(Path.join(options.spoolDirectory, partition))
      for (const key of ["A", "B", "C"] as const) assert.notInclude(left, `${stored[key].reference.segment}.spool`)
    }))

  it.live("a recovered message whose spool content is cut short fails permanently and is never delivered in part", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("queue")
      const options = optionsFor(root)
      const bodies = { lost: content(3000, 20), intact: content(400, 21) }
      const stored = yield* Effect.scoped(Effect.gen(function*() {
        const spool = yield* Spool.make({
          directory: options.spoolDirectory,
          partition,
          segmentSize: 1,
          recordSize: 1024
        })
        const put = (bytes: Uint8Array) =>
          Effect.flatMap(spool.begin, (txn) => Effect.andThen(txn.write(bytes), txn.commit))
        return { lost: yield* put(bodies.lost), intact: yield* put(bodies.intact) }
      }))
      const last = stored.lost.reference.extents[2]
      yield* truncate(
        Path.join(options.spoolDirectory, partition, `${stored.lost.reference.segment}.spool`),
        (last?.offset ?? 0) + 100
      )
      const at = 1_700_000_000_000
      const lostId = QueueId.format({ time: at, counter: 0, partition })
      const intactId = QueueId.format({ time: at, counter: 1, partition })
      // k got its copy before the crash (no event); g and h did not.
      const kName = Maildir.messageName({ at, queueId: lostId, index: 2, hostname })
      const k = yield* Maildir.deliver({
        root: options.maildirRoot,
        domain: "mail.test",
        user: "k",
        name: kName,
        content: [bodies.lost]
      })
      const recovered: Array<Event.Event> = [
        Event.make("MessageQueued", {
          session: "s1",
          at,
          queueId: lostId,
          envelope: envelope(["g@mail.test", "h@void.test", "k@mail.test"]),
          size: stored.lost.size,
          digest: stored.lost.digest,
          spool: stored.lost.reference
        }),
        Event.make("MessageQueued", {
          session: "s2",
          at,
          queueId: intactId,
          envelope: envelope(["g@mail.test"]),
          size: stored.intact.size,
          digest: stored.intact.digest,
          spool: stored.intact.reference
        })
      ]
      const sink: Array<Event.Event> = []
      const queue = yield* start(optionsFor(root, recovered), makeMemory(sink))
      yield* queue.drain

      const failed = ofTag(sink, "DeliveryFailed")
      assert.deepStrictEqual(failed.map((e) => [e.queueId, e.recipient, e.permanent]), [
        [lostId, "g@mail.test", true],
        [lostId, "h@void.test", true]
      ])
      for (const e of failed) assert.isTrue(e.reason.startsWith(Queue.contentLost), e.reason)
      assert.deepStrictEqual(
        ofTag(sink, "MessageDelivered").map((e) => [e.queueId, e.recipient, e.destination]).sort(),
        [
          [intactId, "g@mail.test", Path.join(mailbox(root, "mail.test", "g"), "new", Maildir.messageName({ at, queueId: intactId, index: 0, hostname }))],
          [lostId, "k@mail.test", k.path]
        ].sort()
      )
      assert.deepStrictEqual(ofTag(sink, "MessageCompleted").map((e) => e.queueId).sort(), [lostId, intactId].sort())
      const gFiles = yield* mailFiles(root, "mail.test", "g")
      assert.deepStrictEqual(gFiles.map((f) => f.bytes), [bodies.intact])
      assert.deepStrictEqual(yield* list(Path.join(mailbox(root, "mail.test", "g"), "tmp")), [])
      assert.strictEqual(yield* queue.pending(), 0)
    }))
})

describe("Queue.route", () => {
  const domains: ReadonlyArray<Event.LocalDomain> = [
    { domain: "Mail.Test", users: "*", transport: "maildir" },
    { domain: "list.test", users: ["only"], transport: "maildir" },
    { domain: "void.test", users: "*", transport: "discard" }
  ]
  const table: ReadonlyArray<readonly [string, Queue.Route["_tag"]]> = [
    ["Alice@mail.TEST", "Maildir"],
    ["only@list.test", "Maildir"],
    ["ONLY@list.test", "Maildir"],
    ["other@list.test", "Rejected"],
    ["x@void.test", "Discard"],
    ["x@remote.test", "Remote"],
    ["no-at-sign", "Rejected"],
    ["@mail.test", "Rejected"],
    ["x@", "Rejected"],
    ["\"a@b\"@mail.test", "Maildir"]
  ]
  for (const [recipient, tag] of table) {
    it(`${recipient} → ${tag}`, () => {
      assert.strictEqual(Queue.route(domains, recipient)._tag, tag)
    })
  }
  it("lower-cases the user and the domain", () => {
    assert.deepStrictEqual(Queue.route(domains, "Alice@MAIL.test"), { _tag: "Maildir", domain: "mail.test", user: "alice" })
  })
})
