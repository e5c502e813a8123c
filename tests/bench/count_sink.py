"""An aiosmtpd handler for the sessions benchmark: accepts every mail and counts those that
carry a validation link, writing the count to a file at most every 0.1 s and 0.1 s after the
last mail (the Maildir handler of the test services writes a file per mail, and was the
bottleneck of the measurement).

    PYTHONPATH=tests/bench python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c count_sink.Counter COUNTFILE
"""
import asyncio
import os


class Counter:
    def __init__(self, path):
        self.path = path
        self.count = 0
        self.flush_due = False

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("count_sink.Counter takes the file to write the count to")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        if b"/submitToken?sid=" in envelope.original_content:
            self.count += 1
            if not self.flush_due:
                self.flush_due = True
                asyncio.get_running_loop().call_later(0.1, self.flush)
        return "250 OK"

    def flush(self):
        self.flush_due = False
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(self.count))
        os.replace(tmp, self.path)
