"""Full-text and substring search over every item of every thread.

store.search.schema   the index objects (FTS5 / tsvector + pg_trgm) and reindex
store.search.query    the query syntax and its rendering per database
store.search.api      item-level search with filters, ranking and pages
store.search.snippet  match ranges and snippets
store.search.wire     the app-server thread/search and thread/searchOccurrences
"""

from store.search.api import SearchFilters, SearchHit, SearchPage, search

__all__ = ["SearchFilters", "SearchHit", "SearchPage", "search"]
