// Passkeys (WebAuthn): fetch options over the session, call the browser, post the result
// back in an ordinary form (with the CSRF token). base64url <-> ArrayBuffer by hand.
"use strict";
(function () {
  const csrf = document.querySelector("meta[name=csrf-token]").content;
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const bin = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

  async function options(url) {
    const answer = await fetch(url, { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
    if (!answer.ok) throw new Error("refused");
    return answer.json();
  }

  function credentialJson(cred) {
    const r = cred.response;
    const out = { id: cred.id, rawId: b64(cred.rawId), type: cred.type, clientExtensionResults: {},
                  response: { clientDataJSON: b64(r.clientDataJSON) } };
    if (r.attestationObject) {
      out.response.attestationObject = b64(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = b64(r.authenticatorData);
      out.response.signature = b64(r.signature);
      if (r.userHandle) out.response.userHandle = b64(r.userHandle);
    }
    return JSON.stringify(out);
  }

  const login = document.getElementById("passkey-login");
  if (login) login.addEventListener("click", async () => {
    const o = await options("/console/login/passkey/options");
    o.challenge = bin(o.challenge);
    (o.allowCredentials || []).forEach((c) => { c.id = bin(c.id); });
    const cred = await navigator.credentials.get({ publicKey: o });
    document.getElementById("passkey-tenant").value = document.getElementById("tenant").value;
    document.getElementById("passkey-response").value = credentialJson(cred);
    document.getElementById("passkey-form").submit();
  });

  const register = document.getElementById("passkey-register");
  if (register) register.addEventListener("click", async () => {
    const o = await options("/console/account/passkeys/options");
    o.challenge = bin(o.challenge);
    o.user.id = bin(o.user.id);
    (o.excludeCredentials || []).forEach((c) => { c.id = bin(c.id); });
    const cred = await navigator.credentials.create({ publicKey: o });
    document.getElementById("passkey-register-response").value = credentialJson(cred);
    document.getElementById("passkey-register-form").submit();
  });
})();
