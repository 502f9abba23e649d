// A small colour-word (Stroop-like) task in plain JavaScript.
// Participants name the INK colour of a colour word with the keys R, G, B and Y
// (or the buttons below the word). Under JATOS the results are submitted with
// jatos.submitResultData and the study is ended with jatos.endStudy; opened locally,
// the results are shown on the page instead.

var Experiment = (function () {
  "use strict";

  var INKS = {
    r: { name: "red", css: "#d62728" },
    g: { name: "green", css: "#2ca02c" },
    b: { name: "blue", css: "#1f77b4" },
    y: { name: "yellow", css: "#e6b800" }
  };
  var KEYS = Object.keys(INKS);
  var FIXATION_MS = 500;
  var TIMEOUT_MS = 3000;
  var FEEDBACK_MS = 700;
  var MAIN_TRIALS = 16;

  // Used when the practice list cannot be fetched (e.g. opened from disk as file://).
  var FALLBACK_PRACTICE = [
    { word: "red", ink: "red" },
    { word: "blue", ink: "green" },
    { word: "yellow", ink: "yellow" },
    { word: "green", ink: "blue" }
  ];

  var screen, responses, results = [];

  function keyForInk(name) {
    for (var i = 0; i < KEYS.length; i++) {
      if (INKS[KEYS[i]].name === name) return KEYS[i];
    }
    return null;
  }

  function shuffle(items) {
    for (var i = items.length - 1; i > 0; i--) {
      var j = Math.floor(Math.random() * (i + 1));
      var tmp = items[i]; items[i] = items[j]; items[j] = tmp;
    }
    return items;
  }

  function mainTrials() {
    var trials = [];
    for (var i = 0; i < MAIN_TRIALS; i++) {
      var word = KEYS[i % KEYS.length];
      // Half congruent, half incongruent.
      var ink = i % 2 === 0 ? word : KEYS[(KEYS.indexOf(word) + 1 + (i % 3)) % KEYS.length];
      trials.push({ word: INKS[word].name, ink: INKS[ink].name });
    }
    return shuffle(trials);
  }

  // "word,ink" lines with a header; the file name has a space on purpose.
  function loadPractice() {
    var url = encodeURI("stimuli/practice/list 1.csv");
    if (!window.fetch) return Promise.resolve(FALLBACK_PRACTICE);
    return fetch(url)
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (text) {
        var rows = text.trim().split(/\r?\n/).slice(1);
        var trials = rows.map(function (row) {
          var cells = row.split(",");
          return { word: cells[0].trim(), ink: cells[1].trim() };
        }).filter(function (trial) { return keyForInk(trial.ink) !== null; });
        return trials.length ? trials : FALLBACK_PRACTICE;
      })
      .catch(function () { return FALLBACK_PRACTICE; });
  }

  function show(html) {
    screen.innerHTML = html;
  }

  function wait(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  // Resolves with the key pressed (one of KEYS) or null after timeoutMs.
  function awaitResponse(timeoutMs) {
    return new Promise(function (resolve) {
      var timer = null;
      function finish(key) {
        document.removeEventListener("keydown", onKey);
        responses.removeEventListener("click", onClick);
        if (timer !== null) clearTimeout(timer);
        resolve(key);
      }
      function onKey(event) {
        var key = event.key.toLowerCase();
        if (INKS[key]) finish(key);
      }
      function onClick(event) {
        var button = event.target.closest("button[data-key]");
        if (button) finish(button.getAttribute("data-key"));
      }
      document.addEventListener("keydown", onKey);
      responses.addEventListener("click", onClick);
      if (timeoutMs) timer = setTimeout(function () { finish(null); }, timeoutMs);
    });
  }

  function runTrial(trial, block, index) {
    show('<img class="fixation" src="img/fixation.svg" alt="+">');
    return wait(FIXATION_MS).then(function () {
      var ink = INKS[keyForInk(trial.ink)];
      show('<p class="word" style="color:' + ink.css + '">' + trial.word.toUpperCase() + "</p>");
      var shownAt = performance.now();
      return awaitResponse(TIMEOUT_MS).then(function (key) {
        var correct = key === keyForInk(trial.ink);
        results.push({
          block: block,
          trial: index + 1,
          word: trial.word,
          ink: trial.ink,
          congruent: trial.word === trial.ink,
          response: key ? INKS[key].name : null,
          correct: correct,
          rt_ms: key ? Math.round(performance.now() - shownAt) : null
        });
        if (block !== "practice") return null;
        show('<p class="feedback">' + (key === null ? "Too slow" : correct ? "Correct" : "Wrong") + "</p>");
        return wait(FEEDBACK_MS);
      });
    });
  }

  function runBlock(trials, block) {
    return trials.reduce(function (done, trial, index) {
      return done.then(function () { return runTrial(trial, block, index); });
    }, Promise.resolve());
  }

  function instructions(text) {
    show('<div class="instructions">' + text +
      '<p class="hint">Press <kbd>space</kbd> or click to continue.</p></div>');
    return new Promise(function (resolve) {
      function go(event) {
        if (event.type === "keydown" && event.key !== " ") return;
        document.removeEventListener("keydown", go);
        screen.removeEventListener("click", go);
        resolve();
      }
      document.addEventListener("keydown", go);
      screen.addEventListener("click", go);
    });
  }

  function summary() {
    var main = results.filter(function (r) { return r.block === "main"; });
    function meanRt(rows) {
      var rts = rows.filter(function (r) { return r.correct; }).map(function (r) { return r.rt_ms; });
      if (!rts.length) return null;
      return Math.round(rts.reduce(function (a, b) { return a + b; }, 0) / rts.length);
    }
    return {
      accuracy: main.length ? main.filter(function (r) { return r.correct; }).length / main.length : null,
      mean_rt_congruent_ms: meanRt(main.filter(function (r) { return r.congruent; })),
      mean_rt_incongruent_ms: meanRt(main.filter(function (r) { return !r.congruent; }))
    };
  }

  function finish() {
    responses.hidden = true;
    var data = { task: "colour-word", trials: results, summary: summary() };
    if (window.jatos) {
      show("<p>Saving your answers…</p>");
      jatos.submitResultData(JSON.stringify(data))
        .then(function () { return jatos.endStudy(); })
        .catch(function () { show("<p>Your answers could not be saved. Please tell the experimenter.</p>"); });
    } else {
      show('<div class="instructions"><h1>Done</h1><p>Not running under JATOS; ' +
        "the results are shown here instead of being saved.</p><pre></pre></div>");
      screen.querySelector("pre").textContent = JSON.stringify(data, null, 2);
    }
  }

  function start() {
    screen = document.getElementById("screen");
    responses = document.getElementById("responses");
    loadPractice().then(function (practice) {
      return instructions(
        "<h1>Colour words</h1><p>You will see colour words printed in colour. " +
        "Answer with the colour of the <strong>ink</strong>, not the word:</p>" +
        '<p class="legend"><img src="img/swatch-red.png" alt=""> R &nbsp; ' +
        '<img src="img/swatch-green.png" alt=""> G &nbsp; ' +
        '<img src="img/swatch-blue.png" alt=""> B &nbsp; ' +
        '<img src="img/swatch-yellow.png" alt=""> Y</p>' +
        "<p>First a few practice trials with feedback.</p>"
      ).then(function () {
        responses.hidden = false;
        return runBlock(practice, "practice");
      }).then(function () {
        responses.hidden = true;
        return instructions("<p>Well done. Now the real task, without feedback. Be fast and accurate.</p>");
      }).then(function () {
        responses.hidden = false;
        return runBlock(mainTrials(), "main");
      }).then(finish);
    });
  }

  return { start: start };
})();
