"""The shapes of the core's small records: tuples and lists read by named index.

Constants only: the build folds every name into the code that uses it (tools/constfold.py), so
on the device this module is never loaded and the records cost no more than bare tuples.
"""

# a request waiting for the backend's answer (Controller.requests[id], built by
# authorize.send): (kind authorize.Q_*, outlet, uid, deadline ticks, local id of its session
# or None)
RQ_KIND = 0
RQ_OUTLET = 1
RQ_UID = 2
RQ_DUE = 3
RQ_LID = 4

# a remote-start RFID window (Controller.windows, opened by remote.on_remote_start, matched by
# the chain's WINDOW check in authorize): [token, expiry ticks, SessionID, reusable];
# reusable: the remote start's session ended without charging (outlet.end), so a card
# fallback takes over its SessionID
W_TOKEN = 0
W_DUE = 1
W_SID = 2
W_REUSE = 3
