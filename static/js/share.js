/* The share dialog (templates/sharing/share_dialog.html): who has access, add a person or a group.
 *
 * Talks to the page's shares endpoint (GET the list, POST {user|group, role}, DELETE <id>/) and to
 * /api/directory/?q= for the picker, which asks once typing pauses and ignores answers to older
 * queries. Session requests carry the CSRF token from the dialog. Vanilla JS, no dependencies. */
(function () {
  "use strict";

  var dialog = document.getElementById("share-dialog");
  if (!dialog || dialog.dataset.ready) return;
  dialog.dataset.ready = "1";

  var SEARCH_DELAY_MS = 200;
  var MIN_QUERY = 2;
  var sharesUrl = dialog.dataset.sharesUrl;
  var directoryUrl = dialog.dataset.directoryUrl;
  var csrf = dialog.dataset.csrf;
  var owner = dialog.dataset.owner;
  var noun = dialog.dataset.noun || "item";
  var form = dialog.querySelector(".share-add");
  var input = dialog.querySelector("#share-who");
  var listbox = dialog.querySelector("#share-suggestions");
  var roleSelect = dialog.querySelector("#share-role");
  var submit = form.querySelector("button[type=submit]");
  var message = dialog.querySelector(".share-message");
  var list = dialog.querySelector(".share-list");

  var shares = [];
  var options = [];
  var active = -1;
  var chosen = null;
  var timer = null;
  var searchSeq = 0;
  var busy = false;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function say(text, isError) {
    message.textContent = text || "";
    message.classList.toggle("error", !!isError);
  }

  function errorText(data, response) {
    if (response.status === 429) {
      var wait = response.headers.get("Retry-After");
      return "Too many requests: try again" + (wait ? " in " + wait + " s." : " shortly.");
    }
    if (data && data.errors) {
      var parts = [];
      Object.keys(data.errors).forEach(function (key) {
        var value = data.errors[key];
        parts.push(Array.isArray(value) ? value.join(" ") : String(value));
      });
      if (parts.length) return parts.join(" ");
    }
    if (data && data.detail) return data.detail;
    return "The server answered " + response.status + ".";
  }

  function api(method, url, body) {
    var headers = { Accept: "application/json", "X-CSRFToken": csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (response) {
      if (response.status === 204) return null;
      return response
        .json()
        .catch(function () { return null; })
        .then(function (data) {
          if (!response.ok) {
            var error = new Error(errorText(data, response));
            error.status = response.status;
            throw error;
          }
          return data;
        });
    });
  }

  // --- Who has access ------------------------------------------------------------------

  function label(item) {
    if (item.type === "group") return "group " + item.name;
    return item.display_name && item.display_name !== item.name ? item.display_name + " (" + item.name + ")" : item.name;
  }

  function renderShares() {
    Array.prototype.slice.call(list.querySelectorAll("[data-testid=share-row]")).forEach(function (row) {
      row.remove();
    });
    shares.forEach(function (share) {
      var row = el("li", "share-row");
      row.setAttribute("data-testid", "share-row");
      row.dataset.name = share.name;
      row.dataset.type = share.type;
      row.dataset.role = share.role;
      var who = el("span", "share-who");
      if (share.type === "group") {
        who.appendChild(el("span", "share-name", share.name));
        who.appendChild(el("span", "share-detail", "group"));
      } else {
        who.appendChild(el("span", "share-name", share.display_name || share.name));
        if (share.display_name && share.display_name !== share.name) who.appendChild(el("span", "share-detail", share.name));
      }
      row.appendChild(who);
      var select = el("select");
      select.setAttribute("aria-label", "Role of " + label(share));
      select.setAttribute("data-testid", "share-row-role");
      var roles = [["viewer", "Viewer"], ["editor", "Editor"]];
      if (share.role !== "viewer" && share.role !== "editor") roles.push([share.role, share.role]);
      roles.forEach(function (pair) {
        var option = el("option", "", pair[1]);
        option.value = pair[0];
        option.selected = pair[0] === share.role;
        select.appendChild(option);
      });
      select.addEventListener("change", function () {
        grant(share.type, share.name, select.value, label(share));
      });
      row.appendChild(select);
      var remove = el("button", "", "Remove");
      remove.type = "button";
      remove.setAttribute("data-testid", "share-remove");
      remove.setAttribute("aria-label", "Remove " + label(share));
      remove.addEventListener("click", function () {
        revoke(share);
      });
      row.appendChild(remove);
      list.appendChild(row);
    });
    dialog.dataset.count = String(shares.length);
  }

  function load() {
    return api("GET", sharesUrl).then(function (data) {
      shares = data || [];
      renderShares();
    });
  }

  function grant(type, name, role, text) {
    var body = { role: role };
    body[type] = name;
    setBusy(true);
    return api("POST", sharesUrl, body)
      .then(function (share) {
        say("Shared with " + (text || label(share)) + " as " + share.role + ".");
        return load();
      })
      .catch(function (error) {
        say(error.message, true);
        return load();
      })
      .then(function () { setBusy(false); });
  }

  function revoke(share) {
    setBusy(true);
    return api("DELETE", sharesUrl + share.id + "/")
      .then(function () {
        say(label(share) + " no longer has access.");
      })
      .catch(function (error) {
        say(error.message, true);
      })
      .then(load)
      .catch(function (error) { say(error.message, true); })
      .then(function () { setBusy(false); });
  }

  function setBusy(value) {
    busy = value;
    dialog.setAttribute("aria-busy", value ? "true" : "false");
    submit.disabled = value || !chosen;
  }

  // --- The picker ------------------------------------------------------------------------

  function closeSuggestions() {
    listbox.hidden = true;
    listbox.textContent = "";
    options = [];
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function hasAccess(entry) {
    if (entry.type === "user" && entry.name === owner) return "owner";
    for (var i = 0; i < shares.length; i++) {
      if (shares[i].type === entry.type && shares[i].name === entry.name) return shares[i].role;
    }
    return "";
  }

  function showSuggestions(results) {
    listbox.textContent = "";
    options = results;
    active = results.length ? 0 : -1;
    if (!results.length) {
      var none = el("li", "share-empty", "No person or group matches “" + input.value.trim() + "”.");
      none.setAttribute("role", "option");
      none.setAttribute("aria-disabled", "true");
      listbox.appendChild(none);
    }
    results.forEach(function (entry, index) {
      var item = el("li");
      item.id = "share-option-" + index;
      item.setAttribute("role", "option");
      item.setAttribute("data-testid", "share-option");
      item.dataset.name = entry.name;
      item.dataset.type = entry.type;
      item.appendChild(el("span", "", label(entry)));
      var access = hasAccess(entry);
      item.appendChild(el("span", "share-kind", access ? "has access: " + access : entry.type === "group" ? "group" : "person"));
      item.addEventListener("mousedown", function (event) {
        event.preventDefault(); // keep the focus in the input
        choose(index);
      });
      listbox.appendChild(item);
    });
    listbox.hidden = false;
    input.setAttribute("aria-expanded", "true");
    highlight();
  }

  function highlight() {
    Array.prototype.forEach.call(listbox.querySelectorAll("[data-testid=share-option]"), function (item, index) {
      item.setAttribute("aria-selected", index === active ? "true" : "false");
      if (index === active) {
        input.setAttribute("aria-activedescendant", item.id);
        item.scrollIntoView({ block: "nearest" });
      }
    });
  }

  function choose(index) {
    var entry = options[index];
    if (!entry) return;
    chosen = entry;
    input.value = label(entry);
    closeSuggestions();
    submit.disabled = busy;
    say("");
  }

  function search(query) {
    var seq = ++searchSeq;
    api("GET", directoryUrl + "?q=" + encodeURIComponent(query))
      .then(function (data) {
        if (seq !== searchSeq || chosen) return; // an older answer, or already chosen
        showSuggestions((data && data.results) || []);
      })
      .catch(function (error) {
        if (seq !== searchSeq) return;
        closeSuggestions();
        say(error.message, true);
      });
  }

  input.addEventListener("input", function () {
    chosen = null;
    submit.disabled = true;
    clearTimeout(timer);
    var query = input.value.trim();
    if (query.length < MIN_QUERY) {
      searchSeq++;
      closeSuggestions();
      return;
    }
    timer = setTimeout(function () { search(query); }, SEARCH_DELAY_MS);
  });

  input.addEventListener("keydown", function (event) {
    var open = !listbox.hidden && options.length > 0;
    if (event.key === "ArrowDown" && open) {
      active = (active + 1) % options.length;
      highlight();
      event.preventDefault();
    } else if (event.key === "ArrowUp" && open) {
      active = (active - 1 + options.length) % options.length;
      highlight();
      event.preventDefault();
    } else if (event.key === "Enter" && open && active >= 0) {
      choose(active);
      event.preventDefault();
    } else if (event.key === "Escape" && !listbox.hidden) {
      closeSuggestions();
      event.preventDefault();
      event.stopPropagation(); // close the list, not the dialog
    }
  });

  input.addEventListener("blur", function () {
    setTimeout(closeSuggestions, 100);
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!chosen || busy) {
      if (!chosen) say("Pick a person or a group from the list first.", true);
      return;
    }
    var entry = chosen;
    grant(entry.type, entry.name, roleSelect.value, label(entry)).then(function () {
      chosen = null;
      input.value = "";
      submit.disabled = true;
      input.focus();
    });
  });

  // --- Opening and closing ------------------------------------------------------------------

  function open() {
    if (!dialog.open) dialog.showModal();
    say("");
    input.focus();
    load().catch(function (error) {
      say("Could not load who has access to this " + noun + ": " + error.message, true);
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-share-open]"), function (button) {
    button.addEventListener("click", open);
  });
  dialog.querySelector("[data-share-close]").addEventListener("click", function () {
    dialog.close();
  });
  dialog.addEventListener("click", function (event) {
    if (event.target !== dialog) return;
    var box = dialog.getBoundingClientRect();
    var inside = event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("close", function () {
    closeSuggestions();
    if (window.location.hash === "#share") history.replaceState(null, "", window.location.pathname + window.location.search);
  });
  window.webconnectShare = { open: open, reload: load };
  if (window.location.hash === "#share") open();
})();
