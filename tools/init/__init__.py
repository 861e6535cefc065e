"""``raftlab init``: a student's workspace, with a Raft skeleton to fill in.

The skeleton and the files around it are package data under ``template/``; see
:mod:`tools.init.command`.
"""
