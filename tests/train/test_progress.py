"""Epoch lines: the controller-side callback writes each epoch, the driver logs it."""

import logging

from ccrec.train.progress import EpochLog, epoch_line, epoch_lines

ROW = {"stage": "m1", "epoch": 1, "train_loss": 1.84213, "valid_loss": 1.9012,
       "valid_HR@1": 0.25, "valid_F1@3": 0.5, "valid_examples": 493,
       "examples_per_s": 3210.4, "train_seconds": 13.6, "best_epoch": 1}


def test_an_epoch_in_one_line():
    assert epoch_line(ROW, 30) == ("m1 epoch 2/30  loss 1.8421  valid loss 1.9012  "
                                   "valid HR@1 0.2500  3,210 examples/s  (14 s)")


def test_every_reported_epoch_is_logged_once_in_order(tmp_path, caplog):
    path = tmp_path / "run.epochs.jsonl"
    path.write_text("left over from an earlier run\n")
    with caplog.at_level(logging.INFO, logger="ccrec.train.progress"):
        with epoch_lines(path, epochs=3) as callback:
            assert isinstance(callback, EpochLog)
            for epoch in range(3):
                # what Ray Train's controller calls: one metrics dict per worker
                callback.after_report(None, [{**ROW, "epoch": epoch, "note": [1]},
                                             {**ROW, "epoch": epoch, "train_loss": 9.0}], None)
            callback.after_report(None, [], None)
    lines = [r.getMessage() for r in caplog.records if r.name == "ccrec.train.progress"
             and r.levelno == logging.INFO]
    assert [line.split("  ")[0] for line in lines] == ["m1 epoch 1/3", "m1 epoch 2/3",
                                                       "m1 epoch 3/3"]
    assert all("loss 1.8421" in line for line in lines)  # rank 0's numbers
