// The policy text widget's principal picker (policies/forms.py: PolicyTextWidget),
// a static file so the admin runs under the Content-Security-Policy (no inline script).
function setUpPrincipalPicker(picker) {
  var textarea = document.getElementById(picker.dataset.target);
  var input = picker.querySelector(".principal-search");
  var list = picker.querySelector(".principal-results");
  var timer = null;
  var latest = 0;

  function insert(text) {
    if (textarea.policyEditor) { textarea.policyEditor.insert(text); return; }  // the Cedar editor
    var start = textarea.selectionStart, end = textarea.selectionEnd;
    if (start == null) { start = end = textarea.value.length; }
    textarea.setRangeText(text, start, end, "end");
    textarea.focus();
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function show(results, query) {
    list.replaceChildren();
    if (!results.length) {
      var none = document.createElement("li");
      none.className = "principal-none";
      none.textContent = "No user or group matches “" + query + "”.";
      list.append(none);
      return;
    }
    results.forEach(function (result) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "principal-choice";
      button.textContent = result.label;
      button.title = "Insert " + result.insert.trim();
      button.addEventListener("click", function () {
        insert(result.insert);
        list.replaceChildren();
        input.value = "";
      });
      item.append(button);
      list.append(item);
    });
  }

  function search() {
    var query = input.value.trim();
    var mine = ++latest;
    if (!query) { list.replaceChildren(); return; }
    fetch(picker.dataset.searchUrl + "?q=" + encodeURIComponent(query), {
      credentials: "same-origin", headers: { Accept: "application/json" },
    })
      .then(function (response) { return response.ok ? response.json() : { results: [] }; })
      .then(function (data) { if (mine === latest) { show(data.results, query); } });
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(search, 150);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key !== "Enter") { return; }
    event.preventDefault();  // never submit the policy form from the search box
    var first = list.querySelector(".principal-choice");
    if (first) { first.click(); }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".principal-picker").forEach(setUpPrincipalPicker);
});
