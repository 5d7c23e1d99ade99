from django.urls import path

from blog import views

urlpatterns = [
    path("articles/<int:pk>/", views.article_detail),
    path("authors/<int:author_id>/articles/", views.author_articles),
]
