import { describe, expect, it } from "vitest";
import { presence, summarize } from "./format";
import { job } from "../fixtures.test-util";

describe("summarize", () => {
  it("says an approval that waits for its device was approved, not left out", () => {
    const text = summarize(
      [
        { account: "a", node_id: "n1", result: { result: "sent", job: job(1, "n1", { state: "sent" }) } },
        {
          account: "a",
          node_id: "n3",
          result: {
            result: "queued",
            job: job(2, "n3", { state: "queued", reason: { why: "waiting_for_node" } }, {
              headline: "Approved — will be delivered when the device is online",
            }),
          },
        },
        { account: "a", node_id: "n4", result: { result: "up_to_date" } },
      ],
      (_account, id) => ({ n1: "Kitchen Plug", n3: "Garage Door", n4: "Lamp" })[id] ?? id,
    );
    expect(text).toBe(
      "Started 1: Kitchen Plug. Approved 1, waiting: Garage Door (will be delivered when the device is online). Left out 1: Lamp (already up to date).",
    );
    expect(text).not.toContain("Left out 1: Garage Door");
  });
});

describe("presence", () => {
  const now = new Date(2026, 10, 30, 10, 45).getTime();
  const t = (h: number, m: number) => new Date(2026, 10, 30, h, m).getTime();
  const fresh = (f: Partial<import("../bindings").Freshness> = {}) => ({
    live: false,
    last_sweep: null,
    unknown_since: null,
    checking: null,
    ...f,
  });

  it("says live only when the broker pushes changes", () => {
    const p = presence(true, { how: "live" }, t(10, 44), fresh({ live: true }), now);
    expect(p).toEqual({ state: "online", label: "Online", detail: "live" });
  });

  it("dates a swept state by the account's newest sweep", () => {
    const p = presence(false, { how: "swept", at: t(10, 30) }, t(10, 29), fresh({ last_sweep: t(10, 42) }), now);
    expect(p.state).toBe("offline");
    expect(p.detail).toMatch(/as of 10:42\b/);
    expect(p.detail).toMatch(/last seen online 10:29\b/);
  });

  it("never says online or offline when nothing can be known", () => {
    const p = presence(null, { how: "unknown", since: t(10, 40) }, t(10, 38), fresh({ unknown_since: t(10, 40), last_sweep: t(10, 38) }), now);
    expect(p.state).toBe("unknown");
    expect(p.label).toBe("Unknown");
    expect(p.detail).toMatch(/since 10:40( AM)? — the cloud cannot be reached/);
    expect(p.detail).toMatch(/last seen online 10:38\b/);
  });

  it("shows the state last heard before a restart, without vouching for it", () => {
    const p = presence(null, { how: "remembered", online: true, at: t(10, 31) }, t(10, 31), fresh({ unknown_since: t(10, 44) }), now);
    expect(p.state).toBe("unknown");
    expect(p.label).toBe("Was online");
    expect(p.detail).toMatch(/at 10:31( AM)?, before a restart — not confirmed yet/);
  });

  it("says checking while an account has not answered yet", () => {
    const p = presence(null, { how: "unknown", since: t(10, 44) }, null, fresh({ unknown_since: t(10, 44) }), now);
    expect(p.detail).toBe("checking…");
  });
});
