import { describe, expect, it } from "vitest";
import { summarize } from "./format";
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
      (id) => ({ n1: "Kitchen Plug", n3: "Garage Door", n4: "Lamp" })[id] ?? id,
    );
    expect(text).toBe(
      "Started 1: Kitchen Plug. Approved 1, waiting: Garage Door (will be delivered when the device is online). Left out 1: Lamp (already up to date).",
    );
    expect(text).not.toContain("Left out 1: Garage Door");
  });
});
