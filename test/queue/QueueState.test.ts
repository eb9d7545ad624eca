import { assert, describe, it } from "@effect/vitest"
import * as Event from "../../src/log/Event.ts"
import * as QueueState from "../../src/queue/QueueState.ts"

const queued = (queueId: string, to: ReadonlyArray<string>, at = 1000) =>
  Event.make("MessageQueued", {
    session: "s1",
    at,
    queueId,
    envelope: { from: "a@x.test", to, smtputf8: false },
    size: 10,
    digest: "d",
    spool: { segment: "00000001", extents: [{ offset: 20, length: 10 }] }
  })
const delivered = (queueId: string, recipient: string, at = 2000) =>
  Event.make("MessageDelivered", { at, queueId, recipient, destination: "discard" })
const failed = (queueId: string, recipient: string, permanent: boolean, at = 2000, retryAt?: number) =>
  Event.make("DeliveryFailed", {
    at,
    queueId,
    recipient,
    permanent,
    reason: permanent ? "5.1.1 no such user" : "try later",
    ...(retryAt === undefined ? {} : { retryAt })
  })
const completed = (queueId: string) => Event.make("MessageCompleted", { at: 3000, queueId })

/** queue id → [remaining recipients, their attempts, next attempt time] */
type Expected = Record<string, readonly [ReadonlyArray<string>, ReadonlyArray<number>, number]>

const summary = (state: ReadonlyMap<string, QueueState.Pending>): Expected =>
  Object.fromEntries(
    [...state].map(([id, p]) => [id, [p.remaining.map((r) => r.recipient), p.remaining.map((r) => r.attempts), p.nextAttemptAt]])
  )

describe("QueueState.fromEvents", () => {
  const table: ReadonlyArray<readonly [string, ReadonlyArray<Event.Event>, Expected]> = [
    ["nothing", [], {}],
    ["queued, nothing done", [queued("A", ["a@x", "b@x"])], { A: [["a@x", "b@x"], [0, 0], 1000] }],
    ["duplicate recipients count once", [queued("A", ["a@x", "b@x", "a@x"])], { A: [["a@x", "b@x"], [0, 0], 1000] }],
    ["one delivered", [queued("A", ["a@x", "b@x"]), delivered("A", "b@x")], { A: [["a@x"], [0], 1000] }],
    [
      "temporary failure keeps it, with its retry time",
      [queued("A", ["a@x", "b@x"]), delivered("A", "b@x"), failed("A", "a@x", false, 2000, 9000)],
      { A: [["a@x"], [1], 9000] }
    ],
    [
      "two temporary failures count two attempts",
      [queued("A", ["a@x"]), failed("A", "a@x", false, 2000, 3000), failed("A", "a@x", false, 3000, 5000)],
      { A: [["a@x"], [2], 5000] }
    ],
    [
      "a temporary failure without retryAt is due at its time",
      [queued("A", ["a@x"]), failed("A", "a@x", false, 2500)],
      { A: [["a@x"], [1], 2500] }
    ],
    ["permanent failure removes the recipient", [queued("A", ["a@x", "b@x"]), failed("A", "a@x", true)], {
      A: [["b@x"], [0], 1000]
    }],
    [
      "all done but not completed (crash before MessageCompleted): pending with nobody left",
      [queued("A", ["a@x", "b@x"]), delivered("A", "a@x"), failed("A", "b@x", true)],
      { A: [[], [], 1000] }
    ],
    ["completed", [queued("A", ["a@x"]), delivered("A", "a@x"), completed("A")], {}],
    [
      "events for unknown messages and other events are ignored",
      [
        delivered("Z", "a@x"),
        Event.make("SessionClosed", { session: "s1", at: 1, reason: "quit" }),
        queued("B", ["c@x"]),
        completed("Y")
      ],
      { B: [["c@x"], [0], 1000] }
    ],
    [
      "a repeated MessageQueued does not reset progress",
      [queued("A", ["a@x", "b@x"]), delivered("A", "a@x"), queued("A", ["a@x", "b@x"])],
      { A: [["b@x"], [0], 1000] }
    ],
    [
      "several messages, in queue order",
      [queued("A", ["a@x"], 10), queued("B", ["b@x"], 20), completed("A"), queued("C", ["c@x"], 30)],
      { B: [["b@x"], [0], 20], C: [["c@x"], [0], 30] }
    ]
  ]
  for (const [name, events, expected] of table) {
    it(name, () => {
      assert.deepStrictEqual(summary(QueueState.fromEvents(events)), expected)
    })
  }

  it("keeps the envelope index of each recipient", () => {
    const state = QueueState.fromEvents([queued("A", ["a@x", "a@x", "b@x"])])
    assert.deepStrictEqual(state.get("A")?.remaining.map((r) => r.index), [0, 2])
  })
})

describe("QueueState.retryDelay", () => {
  it("doubles from the base and stops at the cap", () => {
    assert.deepStrictEqual([1, 2, 3, 4, 10].map((n) => QueueState.retryDelay(n, 1000, 5000)), [
      1000,
      2000,
      4000,
      5000,
      5000
    ])
  })
})
