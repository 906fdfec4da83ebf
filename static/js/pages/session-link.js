// The customer's link after creating a session: copy it in one click.
const input = document.getElementById("customer-url");
const copy = document.getElementById("copy");
copy?.addEventListener("click", async () => {
  const said = document.getElementById("copied");
  try {
    await navigator.clipboard.writeText(input.value);
    said.textContent = "Link copied.";
  } catch {
    input.select(); // no clipboard permission: selected, so Ctrl+C copies it
    said.textContent = "Press Ctrl+C (or Cmd+C) to copy the selected link.";
  }
});
