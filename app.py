"""The Gradio page: a face photo and speech in, a talking-head video and its blink statistics out.

    python app.py                      # http://127.0.0.1:7860
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py
    SPEECH_ANIM_CHECKPOINT=runs/grid/checkpoint python app.py   # a model of your own

Environment: GRADIO_SERVER_NAME (host), GRADIO_SERVER_PORT (port), GRADIO_SHARE=true (public link),
SPEECH_ANIM_CHECKPOINT (default model: a folder saved with save_pretrained or a Hub repo id),
SPEECH_ANIM_MAX_AUDIO_SECONDS (speech length cap), SPEECH_ANIM_CONCURRENCY (requests run at once),
SPEECH_ANIM_QUEUE_SIZE (requests allowed to wait). The same function is served to gradio_client as
the `/animate` endpoint. Runs on CUDA when present.
"""

from __future__ import annotations

import argparse
import html
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # plots are drawn in worker threads; never open a window

import gradio as gr
import pandas as pd

from speech_anim.app_helpers import (
    BLINK_HEADERS,
    SUMMARY_HEADERS,
    animate,
    checkpoint_label,
    default_checkpoint,
    load_animator,
    max_audio_seconds,
    user_message,
)
from speech_anim.errors import SpeechAnimError

EXAMPLES = Path(__file__).resolve().parent / "examples"
PAPER = "https://arxiv.org/abs/1906.06337"
DEFAULT_CONCURRENCY = 2  # two requests at once keep 2 CPU cores (or one GPU) busy without thrashing
DEFAULT_QUEUE_SIZE = 20

CSS = """
.gradio-container { max-width: 1180px !important; margin: auto; }
#model-missing { border: 1px solid #d69e2e; background: #fffbeb; border-radius: 8px; padding: 4px 14px; }
#model-missing p { color: #744210; }
#credits p { font-size: 0.85em; color: #718096; }
#animate-button { margin-top: 6px; }
"""
THEME = gr.themes.Soft(primary_hue="indigo", neutral_hue="slate")


def build_demo(checkpoint: str | None = None, concurrency_limit: int | None = None,
               max_queue_size: int | None = None) -> gr.Blocks:
    """The page. `checkpoint` is the model used when the Advanced box is left empty (default:
    $SPEECH_ANIM_CHECKPOINT, else the packaged model); the queue runs `concurrency_limit` requests
    at once and lets `max_queue_size` wait ($SPEECH_ANIM_CONCURRENCY, $SPEECH_ANIM_QUEUE_SIZE)."""
    default = str(checkpoint) if checkpoint is not None else default_checkpoint()
    cap = max_audio_seconds()

    def run(photo, speech, seed, paste_back, model, face=None, progress=gr.Progress()):
        if photo is None:
            raise _error("add a photo with one clearly visible face (upload it or use the webcam)")
        if speech is None:
            raise _error("add speech (upload a recording or use the microphone)")
        image_path, audio_path = _uploaded_path(photo, "photo"), _uploaded_path(speech, "speech")
        chosen = (model or "").strip() or default
        try:
            result = animate(
                image_path, audio_path, seed=seed, paste_back=bool(paste_back), checkpoint=chosen, face=face,
                progress=lambda fraction, stage: progress(fraction, desc=stage),
            )
        except SpeechAnimError as error:
            names = {path: Path(path).name for path in (image_path, audio_path)}
            raise _error(user_message(error, names)) from None
        return (
            str(result.video),
            str(result.crop_png),
            pd.DataFrame(result.summary, columns=SUMMARY_HEADERS),
            pd.DataFrame(result.blinks, columns=BLINK_HEADERS),
            result.figure,
            result.status,
        )

    with gr.Blocks(title="Speech-driven facial animation", delete_cache=(3600, 7200)) as demo:
        gr.Markdown(
            "# Speech-driven facial animation\n"
            "Give a photo of a face and some speech; a temporal GAN makes the face say it, with lip "
            f"movements, blinks and expressions. A re-implementation of [Vougioukas, Petridis & Pantic, "
            f"*Realistic Speech-Driven Facial Animation with GANs*, IJCV 2019]({PAPER})."
        )
        if checkpoint_label(default).endswith("(packaged)"):
            gr.Markdown(
                "The packaged model (`grid-s1`) was trained for about an hour on a CPU, mostly on one GRID "
                "speaker: the lips follow the speech and the eyes blink (a learnt eye process draws when, so "
                "the seed changes the blinks), but the brows and head stay as in the photo, and it moves the "
                "mouth of faces unlike its training speakers less than it should (see `model_card.md`).",
                elem_id="model-note",
            )
        if default is None:
            gr.Markdown(
                "**No trained default model is installed yet.** Open *Advanced* and enter a checkpoint: "
                "a folder saved with `save_pretrained` or a Hugging Face Hub repo id.",
                elem_id="model-missing",
            )
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                photo = gr.Image(label="Face photo", sources=["upload", "webcam"], type="filepath", height=300,
                                 elem_id="photo")
                speech = gr.Audio(label=f"Speech (at most {cap:g} s)", sources=["upload", "microphone"], type="filepath",
                                  elem_id="speech")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0,
                                     info="the same seed gives the same blinks and expressions")
                    paste_back = gr.Checkbox(label="Paste back into my photo", value=True,
                                             info="off: the 96×128 face crop the model makes")
                with gr.Accordion("Advanced", open=default is None):
                    model = gr.Textbox(
                        value="",
                        label="Checkpoint",
                        placeholder="a folder saved with save_pretrained, or a Hub repo id (user/model)",
                        info=f"empty: {checkpoint_label(default)}",
                    )
                    face = gr.Number(label="Face", value=None, precision=0, minimum=0,
                                     info="in a group photo, the face to animate, counted from 0 from the left; "
                                          "empty: the largest")
                button = gr.Button("Animate", variant="primary", elem_id="animate-button")
                gr.Examples(
                    examples=[
                        [str(EXAMPLES / "grid_s1_still.png"), str(EXAMPLES / "grid_s1_bbaf2n.wav")],
                        [str(EXAMPLES / "astronaut.png"), str(EXAMPLES / "grid_s1_bbaf2n.wav")],
                    ],
                    inputs=[photo, speech],
                    cache_examples=False,
                    label="Examples: GRID speaker 1 (“bin blue at f two now”) and the scikit-image astronaut",
                )
            with gr.Column(scale=7):
                video = gr.Video(label="Talking head", height=360, elem_id="video")
                with gr.Row(equal_height=False):
                    crop = gr.Image(label="Aligned face", type="filepath", height=240, interactive=False, buttons=[],
                                    scale=1, format="png", elem_id="crop")
                    with gr.Column(scale=3):
                        status = gr.Markdown(label="Status", elem_id="status",
                                             value="The video, the face the model saw and its blinks appear here.")
                        summary = gr.Dataframe(headers=SUMMARY_HEADERS, label="Blink statistics", interactive=False,
                                               column_widths=["65%", "35%"], elem_id="blink-summary")
                blinks = gr.Dataframe(headers=BLINK_HEADERS, label="Detected blinks", interactive=False,
                                      max_height=200, elem_id="blinks")
                plot = gr.Plot(label="Eye aspect ratio over time", show_label=False, format="png", elem_id="ear-plot")
        gr.Markdown(
            "Blinks are counted on the generated face crop from the eye aspect ratio (EAR, Soukupová & "
            "Čech 2016) of dlib's 68 landmarks, as in the paper's §5; a blink runs from the EAR peak before "
            "its minimum to the one after. The video is H.264 + AAC.\n\n"
            "Example inputs: first frame and audio of GRID corpus clip s1/bbaf2n, CC BY 4.0 — M. Cooke, "
            "J. Barker, S. Cunningham, X. Shao, *An audio-visual corpus for speech perception and automatic "
            "speech recognition*, JASA 120(5):2421–2424, 2006. Astronaut photo: NASA (Eileen Collins), public "
            "domain, via scikit-image.",
            elem_id="credits",
        )
        # The uploads are decoded by `animate` (preprocess=False), so an unreadable file gets its own
        # one-line message naming it, not gradio's generic error; gradio still checks the paths.
        button.click(
            run,
            inputs=[photo, speech, seed, paste_back, model, face],
            outputs=[video, crop, summary, blinks, plot, status],
            api_name="animate",
            preprocess=False,
        )

    limit = concurrency_limit or int(os.environ.get("SPEECH_ANIM_CONCURRENCY", DEFAULT_CONCURRENCY))
    size = max_queue_size or int(os.environ.get("SPEECH_ANIM_QUEUE_SIZE", DEFAULT_QUEUE_SIZE))
    demo.queue(default_concurrency_limit=limit, max_size=size)
    return demo


def launch(demo: gr.Blocks, **options):
    """`demo.launch` with the page's theme and style (gradio 6 takes them at launch)."""
    return demo.launch(theme=THEME, css=CSS, **options)


def _error(message: str) -> gr.Error:
    return gr.Error(html.escape(message, quote=False), title="Cannot animate", print_exception=False)


def _uploaded_path(payload: dict, what: str) -> str:
    """The server path of an upload (webcam pictures and recordings are uploaded as files too)."""
    if not payload.get("path"):
        raise _error(f"the {what} did not arrive: add it again")
    return payload["path"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Serve the speech-driven facial animation page.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on; 0.0.0.0 for the network ($GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port ($GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true",
                        default=os.environ.get("GRADIO_SHARE", "").lower() in ("1", "true", "yes"),
                        help="also serve through a public gradio.live link ($GRADIO_SHARE=true)")
    parser.add_argument("--checkpoint", default=None, help="default model ($SPEECH_ANIM_CHECKPOINT)")
    args = parser.parse_args(argv)

    demo = build_demo(checkpoint=args.checkpoint)
    default = args.checkpoint or default_checkpoint()
    if default is not None:
        try:  # load before the first visitor arrives; a broken default is reported per request
            load_animator(default)
        except SpeechAnimError as error:
            print(f"warning: {error}")
    launch(demo, server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
