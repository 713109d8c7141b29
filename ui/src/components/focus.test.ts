import { describe, expect, it } from "vitest";
import { fireEvent, render, screen, within } from "@testing-library/svelte";
import { mockIPC } from "@tauri-apps/api/mocks";
import Inbox from "./Inbox.svelte";
import { AppModel } from "../lib/app.svelte";
import { node, pending } from "../fixtures.test-util";

function model(ids: string[]) {
  const m = new AppModel();
  m.loaded = true;
  m.accounts = [{ name: "home", cloud_url: null, user: null, mqtt_url: null, pinned_fingerprint: null, state: { state: "connected" }, freshness: { live: true, last_sweep: null, unknown_since: null, checking: null } }];
  m.nodes = ids.map((id) => node(id, `Device ${id}`));
  m.pending = ids.map((id) => pending(id, `Device ${id}`));
  return m;
}

/** Approves the card of `id` the way a keyboard does: its button focused, then activated. */
async function approveByKeyboard(id: string) {
  const card = screen.getAllByTestId("pending-card").find((c) => c.dataset.node === id)!;
  const button = within(card).getByTestId("approve");
  button.focus();
  expect(document.activeElement).toBe(button);
  await fireEvent.click(button);
  // Let the approval's promise and the DOM update run.
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
}

const focusedCard = () => (document.activeElement as HTMLElement | null)?.closest<HTMLElement>('[data-testid="pending-card"]')?.dataset.node;

describe("focus after approving by keyboard", () => {
  it("moves to the next card's Approve button, then the previous one's, then the heading", async () => {
    mockIPC((cmd) => (cmd === "approve" ? new Promise(() => {}) : null)); // the device never answers
    const m = model(["a1", "b2", "c3"]);
    render(Inbox, { model: m });

    await approveByKeyboard("b2");
    expect((document.activeElement as HTMLElement).dataset.testid).toBe("approve");
    expect(focusedCard()).toBe("c3");

    await approveByKeyboard("c3");
    expect((document.activeElement as HTMLElement).dataset.testid).toBe("approve");
    expect(focusedCard()).toBe("a1");

    await approveByKeyboard("a1");
    expect(document.activeElement).toBe(screen.getByTestId("inbox-heading"));
  });

  it("gives the empty inbox's heading the focus when the last card leaves", async () => {
    mockIPC((cmd) => (cmd === "approve" ? [] : null));
    const m = model(["a1"]);
    render(Inbox, { model: m });
    await approveByKeyboard("a1");
    expect(document.activeElement).toBe(screen.getByTestId("inbox-heading"));
    m.apply({ type: "pending_removed", account: "home", node_id: "a1", job_id: "job-a1" });
    await new Promise((r) => setTimeout(r, 0));
    const heading = screen.getByTestId("inbox-heading");
    expect(heading.textContent).toBe("Everything is up to date");
    expect(document.activeElement).toBe(heading);
  });

  it("leaves the focus alone after a mouse click elsewhere", async () => {
    mockIPC((cmd) => (cmd === "approve" ? new Promise(() => {}) : null));
    render(Inbox, { model: model(["a1", "b2"]) });
    const card = screen.getAllByTestId("pending-card")[0];
    (document.activeElement as HTMLElement | null)?.blur();
    await fireEvent.click(within(card).getByTestId("approve"));
    await new Promise((r) => setTimeout(r, 0));
    expect(focusedCard()).toBeUndefined();
  });
});
