import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { expect, test } from "@playwright/test";
import { admin, contributor, firstLink, open, shot, signIn, signOut } from "./helpers";

test("the overview shows every export's health, its runs as a chart, and the connections", async ({ page }) => {
  await signIn(page, admin);
  await page.locator("body[data-hydrated]").waitFor();
  await expect(page.getByText("Exports needing attention")).toBeVisible();
  const rows = page.getByTestId("export-health");
  expect(await rows.count()).toBeGreaterThan(0);
  // An export that ran has a chart described in words.
  await expect(page.getByRole("img", { name: /last \d+ runs?, [\d,]+ sent and [\d,]+ failed in all/ }).first()).toBeVisible();
  await expect(page.getByTestId("connection-health").first()).toContainText(/Authorized|Needs re-authentication/);
  await shot(page, "11-overview");
  // Failing exports come first: none healthy above one that needs attention.
  const words = await rows.evaluateAll((trs) => trs.map((tr) => (tr.textContent ?? "").includes("Needs attention")));
  expect(words).toEqual([...words].sort((a, b) => Number(b) - Number(a)));
  await rows.first().getByRole("link").first().click();
  await expect(page).toHaveURL(/\/data\/exports\/\d+$/);
  await signOut(page);
});

test("an administrator sets who is alerted, and a test alert reaches a webhook", async ({ page }) => {
  const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
  const receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  try {
    await signIn(page, admin);
    await open(page, "/admin/system");
    await expect(page.getByRole("heading", { name: "Alerts", level: 2 })).toBeVisible();
    await page.getByLabel("Email to").fill("ops@example.com, not an address");
    await page.getByLabel("Webhook URL").fill(hook);
    await page.getByRole("button", { name: "Save alert rule" }).click();
    await expect(page.locator("#alert-emails-error")).toContainText("is not an email address");
    await expect(page.getByLabel("Email to")).toHaveAttribute("aria-invalid", "true");
    await page.getByLabel("Email to").fill("ops@example.com");
    await page.getByRole("button", { name: "Save alert rule" }).click();
    await expect(page.getByText("Alert rule saved.")).toBeVisible();

    await page.getByRole("button", { name: "Send test alert" }).click();
    await expect(page.getByText("Test alert sent to 2 recipient(s)")).toBeVisible();
    // The server's alert loop delivers within seconds.
    await expect.poll(() => received.length, { timeout: 20_000 }).toBeGreaterThan(0);
    const event = JSON.parse(received[0].body);
    expect(event.event).toBe("test");
    expect(event.text).toContain("Test alert");
    expect(received[0].headers["x-segment-export-signature"]).toMatch(/^sha256=[0-9a-f]{64}$/);

    // The log shows it: the webhook sent, the email waiting for an SMTP server.
    await expect
      .poll(async () => {
        await page.reload();
        return page.getByTestId("alert-log").first().innerText();
      }, { timeout: 20_000 })
      .toMatch(/Sent · webhook to http:\/\/127\.0\.0\.1:\d+\/hook/);
    await expect(page.getByTestId("alert-log")).toContainText("No SMTP server is set up");
    await shot(page, "11-alerts");
  } finally {
    receiver.close();
  }
  await signOut(page);
});

test("a contributor gives their export its own alert rule, but no webhook", async ({ page }) => {
  await signIn(page, contributor);
  const exportPage = await firstLink(page, "/data/exports", /^\/data\/exports\/\d+$/);
  await open(page, exportPage);
  const section = page.getByRole("region", { name: "Alerts" });
  if (await section.getByText("Only whoever may manage").count()) {
    // Not theirs: no form, and the reason.
    await expect(section.getByRole("button", { name: "Save alert rule" })).toHaveCount(0);
  } else {
    await expect(section.getByLabel("Webhook URL")).toBeDisabled();
    await section.getByLabel("Use the default rule").uncheck();
    await section.getByLabel("Email to").fill("carol-team@example.com");
    await section.getByRole("button", { name: "Save alert rule" }).click();
    await expect(section.getByText("Alert rule saved.")).toBeVisible();
    await page.reload();
    await expect(page.getByRole("region", { name: "Alerts" })).toContainText("This export has its own rule.");
    await expect(page.getByRole("region", { name: "Alerts" }).getByLabel("Email to")).toHaveValue("carol-team@example.com");
  }
  await signOut(page);
});

test("exports, runs, contact errors and the audit log can be searched and filtered", async ({ page }) => {
  await signIn(page, admin);

  // Exports: by text and by the last run's status.
  await open(page, "/data/exports");
  const rows = page.getByTestId("export-row");
  const all = await rows.count();
  expect(all).toBeGreaterThan(0);
  const firstName = (await rows.first().getByRole("link").first().innerText()).trim();
  await page.getByLabel("Search exports").fill(firstName);
  await expect(rows.first()).toContainText(firstName);
  await page.getByLabel("Search exports").fill("no export is called this");
  await expect(page.getByText("No exports match.")).toBeVisible();
  await page.getByLabel("Search exports").fill("");
  await expect(rows).toHaveCount(all);
  await page.getByLabel("Last run").selectOption("never");
  for (const text of await rows.allInnerTexts()) expect(text).toContain("Never run");
  await page.getByLabel("Last run").selectOption("");

  // An export's runs: by status and trigger.
  const exportPage = await firstLink(page, "/data/exports", /^\/data\/exports\/\d+$/);
  await open(page, exportPage);
  const history = page.getByTestId("run-history");
  await page.getByLabel("Started by").selectOption("cli");
  await expect(history).toContainText("No runs match.");
  await page.getByLabel("Started by").selectOption("");
  await page.getByLabel("Status", { exact: true }).selectOption("dry_run");
  for (const text of await history.getByTestId("run-summary").allInnerTexts()) expect(text).toContain("Dry run");

  // A run's contact errors: by email, problem or reason.
  const run = await firstLink(page, exportPage, /^\/runs\/\d+$/);
  await open(page, run);
  const search = page.getByLabel("Search errors");
  if (await search.count()) {
    await search.fill("nothing matches this");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await expect(page.getByText("No errors match.")).toBeVisible();
    await page.getByRole("button", { name: "Show all" }).click();
    await expect(page.getByRole("heading", { name: /^Contact errors \([\d,]+\)$/ })).toBeVisible();
  }

  // The audit log: who, what, when.
  await open(page, "/admin/audit");
  await page.getByLabel("Who").fill(contributor.email);
  await page.getByRole("button", { name: "Filter" }).click();
  const entries = page.locator("tbody tr");
  await expect(entries.first()).toBeVisible();
  for (const text of await entries.allInnerTexts()) expect(text).toContain(contributor.email);
  await page.getByLabel("Who").fill("");
  await page.getByLabel("What").fill("api token");
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page.getByRole("cell", { name: "API token created" }).first()).toBeVisible();
  await page.getByLabel("To").fill("2000-01-01");
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page.getByText("No entries match.")).toBeVisible();
  await page.getByRole("button", { name: "Clear" }).click();
  await expect(entries.first()).toBeVisible();
  await signOut(page);
});
