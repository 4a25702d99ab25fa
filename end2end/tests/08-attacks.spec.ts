import { expect, test } from "@playwright/test";
import { admin, contributor, open, signIn } from "./helpers";

// Attacks from the security review, replayed in a real browser: nothing an
// attacker writes may run as script, and no other site may act for a
// signed-in admin.

const payload = "</title><script>window.__xss=1;alert(1)</script>";

test("a segment named like a script shows as text and runs nothing", async ({ page }) => {
  const dialogs: string[] = [];
  const violations: string[] = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  page.on("console", (m) => {
    if (m.text().includes("Content Security Policy")) violations.push(m.text());
  });
  await signIn(page, admin);
  const created = await page.request.post("/api/create_segment", {
    form: {
      name: payload,
      description: "",
      rule: JSON.stringify({ match: "all", conditions: [{ field: "email", op: "is_set", value: "" }] }),
    },
  });
  expect(created.status()).toBe(200);
  const { id } = await created.json();

  // A direct load: the server writes the title and the page. (Not waiting
  // for hydration: a script in the served HTML would have run by now.)
  await page.goto(`/data/segments/${id}`);
  await expect(page.getByRole("heading", { name: payload })).toBeVisible();
  expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
  expect(await page.title()).toContain("</title><script>");
  // And a visit in the app, rendered by the browser.
  await open(page, "/data/segments");
  await page.getByRole("link", { name: payload }).click();
  await expect(page.getByRole("heading", { name: payload })).toBeVisible();
  expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();

  // Our own pages hydrate under the Content-Security-Policy with nothing
  // refused: every script of ours carries the response's nonce.
  for (const path of ["/", "/data/exports", "/admin/users", "/admin/audit"]) await open(page, path);
  expect(dialogs).toEqual([]);
  expect(violations).toEqual([]);
});

test("another site can neither frame an admin page nor write with the admin's session", async ({ page, baseURL }) => {
  await signIn(page, admin);
  const users = async () => (await (await page.request.post("/api/list_users")).json()) as { id: number; email: string; role: string }[];
  const carol = (await users()).find((u) => u.email === contributor.email)!;
  expect(carol.role).toBe("Contributor");

  await page.route("http://evil.test/**", (route) =>
    route.fulfill({
      contentType: "text/html",
      body: `<!doctype html><html><body>
        <iframe src="${baseURL}/admin/users" width="800" height="600"></iframe>
        <script>
          fetch("${baseURL}/api/set_user_role", {
            method: "POST", mode: "no-cors", credentials: "include",
            headers: { "Content-Type": "application/x-www-form-urlencoded" },
            body: "user_id=${carol.id}&role=admin",
          }).finally(() => { document.title = "sent"; });
        </script></body></html>`,
    }),
  );
  await page.goto("http://evil.test/");
  await expect(page).toHaveTitle("sent");
  // The framed page was refused by the browser: no admin page inside.
  const framed = await Promise.all(
    page
      .frames()
      .filter((f) => f !== page.mainFrame())
      .map((f) => f.evaluate(() => document.body?.innerText ?? "").catch(() => "")),
  );
  for (const text of framed) expect(text).not.toContain("Add user");
  // And the write was refused by the server.
  await open(page, "/admin/users");
  expect((await users()).find((u) => u.id === carol.id)!.role).toBe("Contributor");
});
