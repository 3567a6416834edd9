import {EditorView, basicSetup} from "codemirror"
import {javascript} from "@codemirror/lang-javascript"
import {linter, lintGutter, setDiagnostics} from "@codemirror/lint"
import {Compartment} from "@codemirror/state"
window.CM = {EditorView, basicSetup, javascript, linter, lintGutter, setDiagnostics, Compartment}
