import { describe, expect, it } from "vitest";
import { fileName, historyFileName } from "./files";

describe("file choices", () => {
  it("names the export after the local date", () => {
    expect(historyFileName(new Date(2026, 10, 30, 23, 59))).toBe("greenlight-history-2026-11-30.csv");
    expect(historyFileName(new Date(2027, 0, 5, 0, 1))).toBe("greenlight-history-2027-01-05.csv");
  });

  it("shows a chosen file by its name, whatever form the dialog gave it in", () => {
    expect(fileName("/home/ana/certs/ca.pem")).toBe("ca.pem");
    expect(fileName("C:\\Users\\ana\\sketch.ino.bin")).toBe("sketch.ino.bin");
    expect(fileName("file:///home/ana/my%20sketch.bin")).toBe("my sketch.bin");
    expect(fileName("content://com.android.externalstorage.documents/document/primary%3ADownload%2Fca.pem")).toBe("ca.pem");
  });
});
