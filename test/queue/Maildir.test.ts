import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect, Schema, Stream } from "effect"
import * as Maildir from "../../src/queue/Maildir.ts"
import { concat, content, exists, list, readFile, tempDirectory } from "./QueueFixtures.ts"

const mode = (path: string) => Effect.promise(() => Fs.stat(path).then((s) => s.mode & 0o777))

class BrokenSource extends Schema.TaggedError<BrokenSource>()("BrokenSource", {}) {}

describe("Maildir.deliver", () => {
  it.live("writes the exact content into new/, creating tmp/new/cur with mode 0700", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("maildir")
      const chunks = [content(1000, 1), content(1, 2), content(70_000, 3)]
      const outcome = yield* Maildir.deliver({
        root,
        domain: "Example.Test",
        user: "Alice",
        name: "1700000000.Q1_0.mx",
        content: Stream.fromIterable(chunks)
      })
      const box = Path.join(root, "example.test", "alice")
      assert.deepStrictEqual(outcome, { _tag: "Delivered", path: Path.join(box, "new", "1700000000.Q1_0.mx") })
      assert.deepStrictEqual(yield* readFile(outcome.path), concat(chunks))
      for (const sub of ["tmp", "new", "cur"]) assert.strictEqual(yield* mode(Path.join(box, sub)), 0o700)
      assert.strictEqual(yield* mode(outcome.path), 0o600)
      assert.deepStrictEqual(yield* list(Path.join(box, "tmp")), [])
    }))

  it.live("accepts a plain iterable of chunks", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("maildir")
      const outcome = yield* Maildir.deliver({ root, domain: "x.test", user: "u", name: "n", content: [content(5, 1)] })
      assert.deepStrictEqual(yield* readFile(outcome.path), content(5, 1))
    }))

  it.live("is idempotent: a file in new/ is left alone", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("maildir")
      const target = { root, domain: "x.test", user: "bob", name: "1.Q2_0.mx" }
      const first = yield* Maildir.deliver({ ...target, content: [content(100, 1)] })
      const again = yield* Maildir.deliver({ ...target, content: [content(100, 2)] })
      assert.deepStrictEqual(again, { _tag: "AlreadyDelivered", path: first.path })
      assert.deepStrictEqual(yield* readFile(first.path), content(100, 1))
      assert.deepStrictEqual(yield* list(Path.dirname(first.path)), ["1.Q2_0.mx"])
    }))

  it.live("is idempotent: a copy a reader moved to cur/ with flags counts as delivered", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("maildir")
      const target = { root, domain: "x.test", user: "bob", name: "1.Q3_0.mx" }
      const first = yield* Maildir.deliver({ ...target, content: [content(10, 1)] })
      const box = Path.join(root, "x.test", "bob")
      const moved = Path.join(box, "cur", "1.Q3_0.mx:2,S")
      yield* Effect.promise(() => Fs.rename(first.path, moved))
      const again = yield* Maildir.deliver({ ...target, content: [content(10, 2)] })
      assert.deepStrictEqual(again, { _tag: "AlreadyDelivered", path: moved })
      assert.deepStrictEqual(yield* list(Path.join(box, "new")), [])
      assert.strictEqual(yield* Maildir.find(target), moved)
      // A longer name that merely starts with ours is another message.
      const other = { ...target, name: "1.Q3_0.m" }
      assert.isUndefined(yield* Maildir.find(other))
    }))

  it.live("overwrites a stale tmp/ file left by a crash", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("maildir")
      const box = Path.join(root, "x.test", "carol")
      yield* Effect.promise(() => Fs.mkdir(Path.join(box, "tmp"), { recursive: true }))
      yield* Effect.promise(() => Fs.writeFile(Path.join(box, "tmp", "1.Q4_0.mx"), content(5000, 9)))
      const outcome = yield* Maildir.deliver({
        root,
        domain: "x.test",
        user: "carol",
        name: "1.Q4_0.mx",
        content: [content(300, 1)]
      })
      assert.strictEqual(outcome._tag, "Delivered")
      assert.deepStrictEqual(yield* readFile(outcome.path), content(300, 1))
      assert.deepStrictEqual(yield* list(Path.join(box, "tmp")), [])
    }))

  it.live("a failing content stream leaves nothing in new/ or tmp/ and keeps its error", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("maildir")
      const broken = Stream.concat(Stream.make(content(100, 1)), Stream.fail(new BrokenSource()))
      const result = yield* Effect.result(
        Maildir.deliver({ root, domain: "x.test", user: "dan", name: "1.Q5_0.mx", content: broken })
      )
      assert.strictEqual(result._tag === "Failure" ? result.failure._tag : "none", "BrokenSource")
      const box = Path.join(root, "x.test", "dan")
      assert.deepStrictEqual(yield* list(Path.join(box, "new")), [])
      assert.deepStrictEqual(yield* list(Path.join(box, "tmp")), [])
    }))

  it.live("unsafe local parts and domains stay inside their directory", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("maildir")
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["../x", "\\056.\\057x"],
        [".", "\\056"],
        ["..", "\\056."],
        ["a/b", "a\\057b"],
        [".hidden", "\\056hidden"],
        ["back\\slash", "back\\134slash"],
        ["Mixed.Case", "mixed.case"]
      ]
      for (const [user, directory] of cases) {
        assert.strictEqual(Maildir.directoryName(user), directory)
        const outcome = yield* Maildir.deliver({ root, domain: "x.test", user, name: "n", content: [content(3, 1)] })
        assert.strictEqual(outcome.path, Path.join(root, "x.test", directory, "new", "n"))
      }
      const domains = yield* list(root)
      assert.deepStrictEqual(domains, ["x.test"])
      assert.deepStrictEqual(yield* list(Path.join(root, "x.test")), [...cases.map(([, d]) => d)].sort())

      const evil = yield* Maildir.deliver({ root, domain: "../evil", user: "u", name: "n", content: [content(1, 1)] })
      assert.strictEqual(evil.path, Path.join(root, "\\056.\\057evil", "u", "new", "n"))
      assert.isFalse(yield* exists(Path.join(Path.dirname(root), "evil")))
    }))

  it.live("refuses an empty local part and unsafe file names", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("maildir")
      for (const [user, name] of [["", "n"], ["u", "../n"], ["u", ".."], ["u", ""]] as const) {
        const result = yield* Effect.result(Maildir.deliver({ root, domain: "x.test", user, name, content: [] }))
        assert.strictEqual(result._tag === "Failure" ? result.failure._tag : "none", "MaildirError")
      }
      assert.deepStrictEqual(yield* list(root), [])
    }))
})

describe("Maildir.messageName", () => {
  it("is time.unique.host with the host's / and : escaped", () => {
    assert.strictEqual(
      Maildir.messageName({ at: 1_700_000_000_999, queueId: "0ABC", index: 3, hostname: "mx/1:25" }),
      "1700000000.0ABC_3.mx\\0571\\07225"
    )
  })
})
